"""Producer benchmarks: normalize+encode cost per event, and publish rate per process.

    python bench/producer_bench.py [--runs 3] [--seconds 5]

Publish rates, each against its own nats-server: unpaced (as fast as acks
allow) with 100 and with 1,000 sessions, and paced at 20 events/s per
session with 1,000 sessions (within capacity) and 3,000 (60,000 events/s
offered: beyond one process, so the figure is what it sustains).

Everything is local: an embedded nats-server in a temp dir on a free port.
Prints one JSON object with the medians; bench/README.md records the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from claude_agent_sdk._internal.message_parser import parse_message

from agentcast.bus import connect, disconnect, ensure_streams
from agentcast.embedded import EmbeddedNats
from agentcast.settings import Settings
from producer.acks import AckRouter
from producer.normalize import Normalizer
from producer.publisher import stamp
from producer.synthetic import freeze_startup_objects, load_trace, produce, trace_files


def normalize_encode_us(repeat: int) -> float:
    """CPU µs per event for Normalizer.feed + envelope + JSON encode + size check."""
    messages = []
    for path in trace_files():
        for line in path.read_text().splitlines():
            message = parse_message(json.loads(line))
            if message is not None:
                messages.append(message)
    events = 0
    started = time.process_time()
    for _ in range(repeat):
        normalizer = Normalizer()
        seq = 0
        for message in messages:
            for draft in normalizer.feed(message):
                seq += 1
                stamp(draft.data, session="bench", seq=seq, run=1, max_msg_size=1 << 20)
        events += seq
    return (time.process_time() - started) / events * 1e6


async def publish_rate(sessions: int, rate: float, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedNats(Path(tmp) / "nats")
        server.start()
        try:
            settings = Settings.load({"nats_url": server.admin_url}, environ={})
            nc = await connect(settings, "bench")
            js = nc.jetstream()
            await ensure_streams(js, settings)
            traces = [load_trace(p) for p in trace_files()]
            freeze_startup_objects()  # as `agentcast bench produce` does
            cpu = time.process_time()
            acks = await AckRouter(nc).start()
            report = await produce(
                acks,
                sessions=sessions,
                rate=rate,
                seconds=seconds,
                max_msg_size=settings.max_msg_size,
                traces=traces,
            )
            cpu = time.process_time() - cpu
            await disconnect(nc)
            return {
                "events_per_s": report.events_per_s,
                "events": report.events,
                "cpu_us_per_event": cpu / report.events * 1e6,
            }
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    encode_us = [normalize_encode_us(repeat=20) for _ in range(args.runs)]
    unpaced = [asyncio.run(publish_rate(100, 0, args.seconds)) for _ in range(args.runs)]
    unpaced_many = [asyncio.run(publish_rate(1000, 0, args.seconds)) for _ in range(args.runs)]
    paced = [asyncio.run(publish_rate(1000, 20, args.seconds)) for _ in range(args.runs)]
    saturated = [asyncio.run(publish_rate(3000, 20, args.seconds)) for _ in range(args.runs)]

    def median(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    print(
        json.dumps(
            {
                "normalize_encode_us_per_event": round(statistics.median(encode_us), 2),
                "max_publish_events_per_s_100_sessions": round(median(unpaced, "events_per_s")),
                "max_publish_cpu_us_per_event": round(median(unpaced, "cpu_us_per_event"), 2),
                "max_publish_events_per_s_1000_sessions": round(
                    median(unpaced_many, "events_per_s")
                ),
                "max_publish_1000_cpu_us_per_event": round(
                    median(unpaced_many, "cpu_us_per_event"), 2
                ),
                "paced_1000_sessions_x_20_per_s": round(median(paced, "events_per_s")),
                "paced_cpu_us_per_event": round(median(paced, "cpu_us_per_event"), 2),
                "paced_3000_sessions_x_20_per_s": round(median(saturated, "events_per_s")),
                "paced_3000_cpu_us_per_event": round(median(saturated, "cpu_us_per_event"), 2),
                "runs": args.runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
