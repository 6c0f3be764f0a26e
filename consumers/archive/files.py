"""Archive files on disk: names, reading (plain or zstd), and recovering a chain's tail."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import zstandard

from agentcast.events import TERMINAL_TYPES
from consumers.archive import chain

logger = logging.getLogger(__name__)

PLAIN: Final = ".jsonl"
SEALED: Final = ".jsonl.zst"
_DATE_DIR: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
_SEAL_PREFIX: Final = b'{"seal":'
_GAP_PREFIX: Final = b'{"gap":'


class ArchiveCorrupt(Exception):
    """A file whose chain cannot be continued (run `agentcast verify` on it)."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclasses.dataclass(slots=True, eq=False)
class SessionFile:
    """One session's chain: where it is and how it ends."""

    session: str
    path: Path
    last_seq: int = 0
    last_hash: str = chain.GENESIS
    count: int = 0
    """Event lines in the file."""
    sealed: bool = False
    ended: bool = False
    """The last event closed a run."""
    last_ts: int = 0
    last_cursor: int = 0
    """Stream position (AGENTCAST_EVENTS) of the last event line: a repeat at or before it is a redelivery."""
    gaps: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    fd: int | None = None
    pending: list[bytes] = dataclasses.field(default_factory=list)

    @property
    def compressed(self) -> bool:
        return self.path.name.endswith(SEALED)


def date_of(ts_ns: int) -> str:
    """The UTC date of a producer timestamp, as the archive's directory name."""
    return datetime.fromtimestamp(ts_ns / 1e9, tz=UTC).strftime("%Y-%m-%d")


def session_of(path: Path) -> str | None:
    name = path.name
    for suffix in (SEALED, PLAIN):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def iter_archive(root: Path) -> Iterator[Path]:
    """Every session file under `root` (DIR/<date>/<session>.jsonl[.zst]), sorted."""
    if root.is_file():
        yield root
        return
    for day in sorted(p for p in root.iterdir() if p.is_dir() and _DATE_DIR.fullmatch(p.name)):
        for path in sorted(day.iterdir()):
            if session_of(path) is not None:
                yield path


def leaves(root: Path, path: Path) -> bool:
    """True when `path` under the archive `root` is, or lies under, a link to outside `root`:
    the readers do not follow those unless asked."""
    try:
        return not path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a link loop, or gone
        return True


def read_bytes(path: Path) -> bytes:
    """A file's content, decompressed when it is a sealed `.zst`."""
    if path.name.endswith(".zst"):
        with path.open("rb") as fh:
            return zstandard.ZstdDecompressor().stream_reader(fh).read()
    return path.read_bytes()


def find_session(root: Path, session: str) -> Path | None:
    """The file of a session anywhere under `root`."""
    for day in sorted((p for p in root.iterdir() if p.is_dir()), reverse=True):
        for suffix in (PLAIN, SEALED):
            candidate = day / f"{session}{suffix}"
            if candidate.exists():
                return candidate
    return None


def recover(session: str, path: Path) -> SessionFile:
    """Rebuild a session's chain state from its file.

    A last line without its newline is a write the crash interrupted: it was
    never fsynced nor acknowledged, so it is cut off and will be delivered
    again. Anything else unreadable is corruption, and the archiver stops
    rather than extend a broken chain.
    """
    data = read_bytes(path)
    if data and not data.endswith(b"\n"):
        if path.name.endswith(".zst"):
            raise ArchiveCorrupt(path, "sealed file does not end with a newline")
        keep = data.rfind(b"\n") + 1
        logger.warning("%s: cutting an unfinished last line (%d bytes)", path, len(data) - keep)
        os.truncate(path, keep)
        data = data[:keep]
    sf = SessionFile(session=session, path=path)
    if not data:
        return sf
    lines = data.split(b"\n")[:-1]
    for line in lines:
        if line.startswith(_GAP_PREFIX):
            gap = chain.parse(chain.split(line)[0])["gap"]
            sf.gaps.append((int(gap["after_seq"]), int(gap["next_seq"])))
        elif not line.startswith(_SEAL_PREFIX):
            sf.count += 1
    try:
        canonical, sf.last_hash = chain.split(lines[-1])
        record = chain.parse(canonical)
    except chain.MalformedLine as exc:
        raise ArchiveCorrupt(path, f"last line: {exc}") from None
    match chain.record_kind(record):
        case "seal":
            sf.sealed = sf.ended = True
            sf.last_seq = int(record["seal"]["last_seq"])
        case "gap":
            sf.last_seq = int(record["gap"]["next_seq"]) - 1
        case _:
            sf.last_seq = int(record["seq"])
            sf.ended = record.get("type") in TERMINAL_TYPES
    ts, sf.last_cursor = _last_event(lines)
    if not sf.sealed:
        sf.last_ts = ts
    return sf


def _last_event(lines: list[bytes]) -> tuple[int, int]:
    """(ts, cursor) of the last event line."""
    for line in reversed(lines):
        if not line.startswith((_SEAL_PREFIX, _GAP_PREFIX)):
            record = chain.parse(chain.split(line)[0])
            ts, cursor = record.get("ts"), record.get("cursor")
            return (
                ts if isinstance(ts, int) else 0,
                int(cursor) if isinstance(cursor, str) and cursor.isdigit() else 0,
            )
    return 0, 0


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """Write a whole file through a temporary name: after a crash it is there entirely or not at all."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def compress(data: bytes) -> bytes:
    # Level 3 (zstd's default): fast, and the same bytes for the same input.
    return zstandard.ZstdCompressor(level=3).compress(data)
