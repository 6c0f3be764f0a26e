"""Metrics benchmark: events/s through the progress consumer (decode, reducer, Prometheus, KV).

    python bench/metrics_bench.py [--events 300000] [--sessions 200] [--runs 3]
    python bench/metrics_bench.py --live [--sessions 100] [--rate 20] [--seconds 10]

Each run: a fresh nats-server, the stream filled with `--events` events,
then the real ProgressService (in this process) drains it, publishing
snapshots and storing states every `progress_interval_s` as in production;
the figure is events / (last ack - start of reading). Prints one JSON object
per run and the median; bench/README.md records the results.
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
from consumers.progress.service import ProgressService


async def one_run(load: Load) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, server(Path(tmp)) as nats:
        total = 0 if load.live else await fill(nats.admin_url, load.events, load.sessions)
        settings = Settings.load({"nats_url": nats.admin_url, "data_dir": tmp}, environ={})
        nc = await connect(settings, "bench-metrics")
        service = ProgressService(settings, nc)
        await service.startup()
        if load.live:
            return await live(service, lambda: service.applied, nats, nc, load)
        cpu = time.process_time()
        elapsed = await drain(service, lambda: service.applied, total)
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


if __name__ == "__main__":
    main(__doc__, one_run, events=300_000)
