"""Metrics benchmark: events/s through the progress consumer (decode, reducer, Prometheus, KV).

    python bench/metrics_bench.py [--events 300000] [--sessions 200] [--runs 3]

Each run: a fresh nats-server, the stream filled with `--events` events,
then the real ProgressService (in this process) drains it, publishing
snapshots and storing states every `progress_interval_s` as in production;
the figure is events / (last ack - start of reading). Prints one JSON object
per run and the median; bench/README.md records the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _consumer_load import fill, server  # noqa: E402

from agentcast.bus import connect  # noqa: E402
from agentcast.settings import Settings  # noqa: E402
from consumers.progress.service import ProgressService  # noqa: E402

_LIMIT_S = 120.0


async def one_run(events: int, sessions: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, server(Path(tmp)) as nats:
        total = await fill(nats.url, events, sessions)
        settings = Settings.load({"nats_url": nats.url, "data_dir": tmp}, environ={})
        nc = await connect(nats.url, "bench-metrics")
        service = ProgressService(settings, nc)
        await service.startup()
        stop = asyncio.Event()
        loop = asyncio.ensure_future(service._loop(stop))
        started = time.perf_counter()
        cpu = time.process_time()
        deadline = started + _LIMIT_S
        while service.applied < total and time.perf_counter() < deadline and not loop.done():
            await asyncio.sleep(0.005)
        stop.set()
        await loop
        await service.commit()
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        applied = service.applied
        await service.shutdown()
        await nc.close()
    return {
        "events": applied,
        "seconds": round(elapsed, 3),
        "events_per_s": round(applied / elapsed),
        "cpu_us_per_event": round(cpu / applied * 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = []
    for _ in range(args.runs):
        result = asyncio.run(one_run(args.events, args.sessions))
        print(json.dumps(result), flush=True)
        results.append(result)
    median = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(json.dumps({"median": median}))


if __name__ == "__main__":
    main()
