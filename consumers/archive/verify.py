"""`agentcast verify`: check every chain of an archive and say exactly where one breaks.

Each line's hash is recomputed from the previous line's stored hash, so one
bad line does not hide the rest. When a line does not chain, its neighbours
and its seq tell which tampering it was:

    swapped   line i chains after line i+1, and line i+1 after line i-1
    inserted  line i+1 chains directly after line i-1
    moved     line i chains after some other line j
    deleted   the seq jumps (seq s missing before line i)
    edited    line i+1 chains after line i: line i's content changed
    truncated the file ends inside a line
    seal      a seal whose count, last seq or last hash disagree with the lines
              before it; or no seal at the end of the file
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import zstandard

from consumers.archive import chain
from consumers.archive.files import PLAIN, SEALED, iter_archive, read_bytes, session_of

_MAX_SEARCH: Final = 200_000
"""Lines searched for a moved line's true predecessor."""


@dataclass(frozen=True)
class Problem:
    line: int
    kind: str
    message: str


@dataclass
class FileReport:
    path: Path
    events: int = 0
    problems: list[Problem] = field(default_factory=list)
    sealed: bool = False
    not_archive: bool = False
    """Not one line of the file is an archive line."""
    heads: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """Each line's stored hash -> (line number, events up to it, last seq up to it)."""
    event_lines: list[int] = field(default_factory=list)
    """The line number of event n at index n - 1."""
    covered: tuple[int, int] = (0, 0)
    """(checkpoint seq, events) of the newest checkpoint whose head for this file holds."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> Iterable[str]:
        for p in self.problems:
            yield f"{self.path}:{p.line}: {p.kind}: {p.message}"


@dataclass
class _Line:
    no: int
    canonical: bytes
    digest: str
    record: dict[str, Any]
    kind: str


def verify_path(path: Path, *, allow_open: bool = False) -> list[FileReport]:
    """Reports for a file or for every session file under a directory."""
    return [verify_file(p, allow_open=allow_open) for p in iter_archive(path)]


def verify_file(path: Path, *, allow_open: bool = False) -> FileReport:
    report = FileReport(path)
    try:
        data = _read_live(path)
    except (OSError, zstandard.ZstdError) as exc:
        report.problems.append(Problem(0, "unreadable", str(exc)))
        return report
    raw = data.split(b"\n")
    lines: list[_Line] = []
    for no, text in enumerate(raw[:-1], 1):
        try:
            canonical, digest = chain.split(text)
            record = chain.parse(canonical)
        except chain.MalformedLine as exc:
            report.problems.append(Problem(no, "edited", f"not an archive line ({exc})"))
            continue
        lines.append(_Line(no, canonical, digest, record, chain.record_kind(record)))
    # An open file's unfinished last line is being written (or a crash cut it, and the
    # archiver will): accepted with the open files, never acknowledged, never checkpointed.
    if raw[-1] and not (allow_open and path.name.endswith(PLAIN) and any(raw[:-1])):
        report.problems.append(
            Problem(len(raw), "truncated", "the file ends inside this line (no newline)")
        )
    report.not_archive = not lines and any(raw)
    _check_chain(lines, report, session_of(path))
    _index(lines, report)
    report.sealed = bool(lines) and lines[-1].kind == "seal"
    if not report.sealed and not allow_open and not raw[-1]:
        last = lines[-1].no if lines else 0
        report.problems.append(
            Problem(last, "missing seal", "the file does not end with a seal line")
        )
    report.problems.sort(key=lambda p: p.line)
    return report


def _read_live(path: Path) -> bytes:
    """A file's content, following it when a live archiver compressed or reopened it meanwhile."""
    try:
        return read_bytes(path)
    except FileNotFoundError:
        session = session_of(path)
        if session is None:
            raise
        other = SEALED if path.name.endswith(PLAIN) else PLAIN
        return read_bytes(path.with_name(session + other))


def _index(lines: list[_Line], report: FileReport) -> None:
    """Where each stored hash sits, for checking the heads that checkpoints recorded."""
    events = last_seq = 0
    for ln in lines:
        if ln.kind == "event":
            events += 1
            seq = ln.record.get("seq")
            last_seq = seq if isinstance(seq, int) else last_seq
            report.event_lines.append(ln.no)
        elif ln.kind == "gap":
            last_seq = int(ln.record["gap"].get("next_seq", last_seq + 1)) - 1
        report.heads[ln.digest] = (ln.no, events, last_seq)
    report.events = events


def _check_chain(lines: list[_Line], report: FileReport, session: str | None) -> None:
    add = report.problems.append
    prev_hash = chain.GENESIS
    prev_seq = 0
    events = 0
    i = 0
    n = len(lines)
    while i < n:
        ln = lines[i]
        seq = ln.record.get("seq") if ln.kind == "event" else None
        if ln.kind == "event" and session is not None and ln.record.get("session") != session:
            add(
                Problem(
                    ln.no, "edited", f"session {ln.record.get('session')!r} in {session}'s file"
                )
            )
        seal_broken = ln.kind == "seal" and _check_seal(ln, events, prev_seq, prev_hash, add)
        if seal_broken or chain.link(prev_hash, ln.canonical) == ln.digest:
            events, prev_seq = _advance(ln, events, prev_seq, add)
            prev_hash = ln.digest
            i += 1
            continue
        nxt = lines[i + 1] if i + 1 < n else None
        if nxt and chain.link(prev_hash, nxt.canonical) == nxt.digest:
            if chain.link(nxt.digest, ln.canonical) == ln.digest:
                add(Problem(ln.no, "reordered", f"lines {ln.no} and {nxt.no} are swapped"))
                events, prev_seq = _advance(nxt, events, prev_seq, add)
                events, prev_seq = _advance(ln, events, prev_seq, add)
                prev_hash = ln.digest
                i += 2
                continue
            j = _predecessor(lines, ln)
            where = f"a line that belongs after line {j}" if j else "not part of the chain"
            add(Problem(ln.no, "inserted", f"line {ln.no} was inserted ({where})"))
            i += 1
            continue
        j = _predecessor(lines, ln)
        if j is not None:
            add(Problem(ln.no, "reordered", f"line {ln.no} belongs after line {j or 'the start'}"))
        elif isinstance(seq, int) and seq > prev_seq + 1 and not _explained_by_gap(lines, i):
            missing = (
                f"seq {prev_seq + 1}" if seq == prev_seq + 2 else f"seqs {prev_seq + 1}..{seq - 1}"
            )
            add(Problem(ln.no, "deleted", f"{missing} missing before this line"))
        elif nxt and chain.link(ln.digest, nxt.canonical) == nxt.digest:
            add(Problem(ln.no, "edited", "the content does not match its hash"))
        else:
            add(
                Problem(
                    ln.no, "edited", "the chain breaks here (this line or the one before changed)"
                )
            )
        events, prev_seq = _advance(ln, events, prev_seq, None)
        prev_hash = ln.digest
        i += 1


def _advance(ln: _Line, events: int, prev_seq: int, add: Any) -> tuple[int, int]:
    if ln.kind == "event":
        seq = ln.record.get("seq")
        if add is not None and isinstance(seq, int) and seq <= prev_seq:
            add(Problem(ln.no, "reordered", f"seq {seq} after seq {prev_seq}"))
        return events + 1, seq if isinstance(seq, int) else prev_seq
    if ln.kind == "gap":
        return events, int(ln.record["gap"].get("next_seq", prev_seq + 1)) - 1
    return events, prev_seq


def _check_seal(ln: _Line, events: int, prev_seq: int, prev_hash: str, add: Any) -> bool:
    """Add a problem when the seal disagrees with the lines before it; say whether it did."""
    seal = ln.record["seal"]
    if seal.get("count") != events or seal.get("last_seq") != prev_seq:
        add(
            Problem(
                ln.no,
                "deleted"
                if isinstance(seal.get("count"), int) and seal["count"] > events
                else "inserted",
                f"the seal records {seal.get('count')} events up to seq {seal.get('last_seq')}, "
                f"the file has {events} up to seq {prev_seq}",
            )
        )
        return True
    if seal.get("last_hash") != prev_hash:
        add(Problem(ln.no, "edited", "the seal's last hash is not the previous line's"))
        return True
    return False


def _explained_by_gap(lines: list[_Line], i: int) -> bool:
    return i > 0 and lines[i - 1].kind == "gap"


def _predecessor(lines: list[_Line], ln: _Line) -> int | None:
    """The line number this line really chains after (0 for the start), if it is in the file."""
    if chain.link(chain.GENESIS, ln.canonical) == ln.digest:
        return 0
    for other in lines[:_MAX_SEARCH]:
        if other is not ln and chain.link(other.digest, ln.canonical) == ln.digest:
            return other.no
    return None
