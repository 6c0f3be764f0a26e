"""Reading a session back from the archive, as envelopes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import zstandard

from agentcast.codec import loose_event_decoder
from agentcast.events import AnyEvent
from consumers.archive import chain
from consumers.archive.files import find_session, read_bytes


def session_path(root: Path, session: str) -> Path | None:
    """A session's file: `root` itself when it is one, else found under the archive `root`."""
    if root.is_file():
        return root
    return find_session(root, session) if root.is_dir() else None


class NotAnArchive(ValueError):
    """A file that cannot be read as a session's archive file."""


def read_events(path: Path) -> Iterator[AnyEvent]:
    """The events of one session file in chain order (seal and gap lines skipped)."""
    try:
        data = read_bytes(path)
    except (OSError, zstandard.ZstdError) as exc:
        raise NotAnArchive(f"cannot read it ({exc})") from None
    for no, line in enumerate(data.splitlines(), 1):
        try:
            canonical, _ = chain.split(line)
            if canonical.startswith((b'{"seal":', b'{"gap":')):
                continue
            event = loose_event_decoder.decode(canonical)
        except (chain.MalformedLine, msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise NotAnArchive(f"line {no} is not an archive line ({exc})") from None
        yield event
