"""`agentcast replay SESSION`: print a session from the archive, as `tail` prints it live."""

from __future__ import annotations

import argparse
from pathlib import Path

from agentcast.commands._common import fail, settings_from_args


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("replay", help="print a session from the archive")
    p.add_argument("session", help="session id (or a path to its archive file)")
    p.add_argument(
        "--archive", dest="archive_dir", help="archive directory (default <data>/archive)"
    )
    p.add_argument("--data", dest="data_dir", help="data directory (default ./.agentcast)")
    p.add_argument("--json", action="store_true", help="one envelope per line")
    p.add_argument(
        "--follow-links",
        action="store_true",
        help="read a session file linked from outside the archive",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from agentcast.render import Renderer
    from agentcast.sessions import is_valid_session_id
    from consumers.archive.files import leaves
    from consumers.archive.reader import NotAnArchive, read_events, session_path

    as_path = Path(args.session)
    if as_path.is_file():
        path: Path | None = as_path
    elif not is_valid_session_id(args.session):
        fail(f"invalid session id {args.session!r}")
    else:
        root = settings_from_args(args).resolved_archive_dir()
        path = session_path(root, args.session) if root.exists() else None
        if path is None:
            fail(f"session {args.session} is not in the archive {root}", 1)
        if root.is_dir() and leaves(root, path) and not args.follow_links:
            fail(f"{path} links out of the archive {root}; not read (--follow-links reads it)")
    assert path is not None
    renderer = Renderer(Console(highlight=False), json=args.json)
    try:
        for event in read_events(path):
            renderer.feed(event)
    except NotAnArchive as exc:
        fail(f"{path}: {exc}")
    finally:
        renderer.close()
    return 0
