"""`agentcast verify PATH`: check the hash chains of an archive file or tree."""

from __future__ import annotations

import argparse
from pathlib import Path

from agentcast.commands._common import fail


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "verify", help="check every hash chain of an archive (a file or a directory)"
    )
    p.add_argument("path", type=Path)
    p.add_argument(
        "--open-ok",
        action="store_true",
        help="accept unsealed files (sessions still active in a live archive)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="print problems only")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from consumers.archive.verify import verify_path

    if not args.path.exists():
        fail(f"{args.path}: no such file or directory")
    reports = verify_path(args.path, allow_open=args.open_ok)
    bad = [r for r in reports if not r.ok]
    for report in bad:
        for line in report.lines():
            print(line)
    if not args.quiet:
        events = sum(r.events for r in reports)
        verdict = "OK" if not bad else f"BROKEN: {len(bad)} of {len(reports)} files"
        print(f"{verdict}: {len(reports)} files, {events} events")
    return 1 if bad or not reports else 0
