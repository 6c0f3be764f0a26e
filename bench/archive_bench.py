"""Archiver benchmark: sustained events/s into hash-chained files, fsync batched, acks after fsync.

    python bench/archive_bench.py [--events 200000] [--sessions 200] [--runs 3]

Each run: a fresh nats-server and archive directory, the stream filled with
`--events` events, then the real Archiver (in this process) drains it; the
figure is events / (last ack - start of reading). Prints one JSON object per
run and the median; bench/README.md records the results.
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
from consumers.archive.service import Archiver  # noqa: E402

_LIMIT_S = 120.0


async def one_run(events: int, sessions: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, server(Path(tmp)) as nats:
        total = await fill(nats.url, events, sessions)
        settings = Settings.load(
            {"nats_url": nats.url, "data_dir": tmp, "archive_dir": f"{tmp}/archive"}, environ={}
        )
        nc = await connect(nats.url, "bench-archiver")
        archiver = Archiver(settings, nc, Path(tmp) / "archive")
        await archiver.startup()
        stop = asyncio.Event()
        loop = asyncio.ensure_future(archiver._loop(stop))
        started = time.perf_counter()
        cpu = time.process_time()
        deadline = started + _LIMIT_S
        while archiver.archived < total and time.perf_counter() < deadline and not loop.done():
            await asyncio.sleep(0.005)
        stop.set()
        await loop
        await archiver.commit()
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        archived = archiver.archived
        await archiver.shutdown()
        await nc.close()
        size = sum(p.stat().st_size for p in (Path(tmp) / "archive").rglob("*.jsonl"))
    return {
        "events": archived,
        "seconds": round(elapsed, 3),
        "events_per_s": round(archived / elapsed),
        "cpu_us_per_event": round(cpu / archived * 1e6, 2),
        "mb_per_s": round(size / elapsed / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
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
