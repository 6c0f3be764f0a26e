"""`agentcast archiver`: the tamper-evident audit archive (consumers/archive)."""

from __future__ import annotations

import argparse
import sys

from agentcast.commands._common import add_common_args, fail, settings_from_args, setup_logging
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
    p.add_argument(
        "--key",
        dest="archive_key",
        help="Ed25519 signing key (PEM) for checkpoints (default <data>/archive.key, made at first start)",
    )
    p.add_argument(
        "--checkpoint-interval",
        dest="checkpoint_interval_s",
        type=float,
        help="seconds between signed checkpoints (default 60)",
    )
    p.add_argument(
        "--print-public-key",
        action="store_true",
        help="print the checkpoints' public key (creating the key if needed) and exit",
    )
    p.add_argument(
        "--rotate-key",
        action="store_true",
        help="make a new key; the archiver names it in its next checkpoint, signed by the old one",
    )
    p.set_defaults(func=_run)


def _keys(args: argparse.Namespace) -> int:
    from consumers.archive import signing

    path = signing.key_path(settings_from_args(args))
    try:
        key = signing.load_or_create(path)
        if args.rotate_key:
            nxt = signing.create_next(path)
            print(signing.public_of(nxt))
            print(
                f"agentcast: the archiver signs its next checkpoint with {signing.public_of(key)} "
                f"naming this key, then uses {signing.next_path(path)} as {path}",
                file=sys.stderr,
            )
        else:
            print(signing.public_of(key))
    except (OSError, signing.KeyProblem) as exc:
        fail(str(exc))
    return 0


def _run(args: argparse.Namespace) -> int:
    from agentcast.commands._role import run_consumer
    from consumers.archive.service import Archiver
    from consumers.suspects import SuspectEvents

    if args.print_public_key or args.rotate_key:
        return _keys(args)
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
