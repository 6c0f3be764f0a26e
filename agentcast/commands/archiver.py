"""`agentcast archiver`: the tamper-evident audit archive (consumers/archive)."""

from __future__ import annotations

import argparse
import asyncio
import signal

from agentcast.commands._common import add_common_args, fail, resolve_nats, settings_from_args, setup_logging


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("archiver", help="archive every event to hash-chained JSONL files per session")
    add_common_args(p)
    p.add_argument("--dir", dest="archive_dir", help="archive directory (default <data>/archive)")
    p.add_argument("--partitions", dest="archive_partitions", type=int, help="archiver processes sharing the work")
    p.add_argument("--partition", dest="archive_partition", type=int, help="which one this is (0-based)")
    p.add_argument("--seal-idle", dest="seal_idle_s", type=float, help="seal a session idle this long after its run")
    p.add_argument("--compress", dest="compress_sealed", action="store_true", default=None, help="zstd sealed files")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from agentcast.bus import connect
    from consumers.archive.service import Archiver
    from consumers.lease import LeaseHeld

    setup_logging(args)
    settings = settings_from_args(args)
    url, server = resolve_nats(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        nc = await connect(url, "agentcast-archiver")
        try:
            await Archiver(settings, nc, settings.resolved_archive_dir()).run(stop)
        finally:
            await nc.drain()

    try:
        asyncio.run(main())
    except LeaseHeld as exc:
        fail(str(exc), 1)
    except ValueError as exc:
        fail(str(exc))
    finally:
        if server is not None:
            server.stop()
    return 0
