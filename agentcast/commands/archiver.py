"""`agentcast archiver`: the tamper-evident audit archive (consumers/archive)."""

from __future__ import annotations

import argparse

from agentcast.commands._common import add_common_args, settings_from_args, setup_logging
from agentcast.commands._role import add_partition_args


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "archiver", help="archive every event to hash-chained JSONL files per session"
    )
    add_common_args(p)
    p.add_argument("--dir", dest="archive_dir", help="archive directory (default <data>/archive)")
    add_partition_args(p, "archive", "archiver processes sharing the work")
    p.add_argument(
        "--seal-idle",
        dest="seal_idle_s",
        type=float,
        help="seconds idle after a run before sealing",
    )
    p.add_argument(
        "--compress",
        dest="compress_sealed",
        action="store_true",
        default=None,
        help="zstd sealed files",
    )
    p.add_argument(
        "--metrics-port",
        dest="archiver_metrics_port",
        type=int,
        default=None,
        help="serve the archiver's /metrics (suspected forgeries) on this port (0: a free one)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from agentcast.commands._role import run_consumer
    from consumers.archive.service import Archiver
    from consumers.suspects import SuspectEvents

    setup_logging(args)
    settings = settings_from_args(args)
    root = settings.resolved_archive_dir()
    suspects = SuspectEvents("archiver")
    if args.archiver_metrics_port is not None:
        suspects.serve(args.archiver_metrics_port)
    try:
        return run_consumer(
            settings, "agentcast-archiver", lambda nc: Archiver(settings, nc, root, suspects)
        )
    finally:
        suspects.close()
