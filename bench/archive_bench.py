"""Archiver benchmark: sustained events/s into hash-chained files, fsync batched, acks after fsync.

    python bench/archive_bench.py [--events 200000] [--sessions 200] [--runs 3]
    python bench/archive_bench.py --live [--sessions 100] [--rate 20] [--seconds 10]

Each run: a fresh nats-server and archive directory, the stream filled with
`--events` events, then the real Archiver (in this process) drains it; the
figure is events / (last ack - start of reading). Prints one JSON object per
run and the median; bench/README.md records the results.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _consumer_load import Load, drain, fill, live, main, server

from agentcast.bus import connect
from agentcast.settings import Settings
from consumers.archive.service import Archiver


async def one_run(load: Load) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, server(Path(tmp)) as nats:
        total = 0 if load.live else await fill(nats.admin_url, load.events, load.sessions)
        settings = Settings.load({"nats_url": nats.admin_url, "data_dir": tmp}, environ={})
        nc = await connect(settings, "bench-archiver")
        archiver = Archiver(settings, nc, Path(tmp) / "archive")
        await archiver.startup()
        if load.live:
            return await live(archiver, lambda: archiver.archived, nats, nc, load)
        cpu = time.process_time()
        elapsed = await drain(archiver, lambda: archiver.archived, total)
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


if __name__ == "__main__":
    main(__doc__, one_run, events=200_000)
