"""Where runs start in a session's stream, read from JetStream (for joins and the resume route)."""

from __future__ import annotations

from typing import NamedTuple

from agentcast.codec import decode_loose
from agentcast.events import TERMINAL_TYPES
from agentcast.subjects import event_subject
from gateway.replay import DirectReader, stored_seq

_BATCH = 1000


class RunStart(NamedTuple):
    seq: int
    """Stream sequence of the run's `run.queued`."""
    run: int


async def run_starts(reader: DirectReader, session: str) -> list[RunStart]:
    """Every stored `run.queued` of a session, oldest first (one small message per run)."""
    subject = event_subject(session, "run.queued")
    found: list[RunStart] = []
    seq = 1
    while True:
        batch = await reader.batch(seq, subject, _BATCH, 1 << 20)
        found += [RunStart(f.seq, decode_loose(f.payload).run) for f in batch.frames]
        if batch.pending == 0 or not batch.frames:
            return found
        seq = found[-1].seq + 1


async def run_start_before(reader: DirectReader, session: str, after: int) -> int | None:
    """The `run.queued` sequence of the last run that began at or before `after`."""
    starts = [s.seq for s in await run_starts(reader, session) if s.seq <= after]
    return starts[-1] if starts else None


async def active_run(reader: DirectReader, session: str) -> RunStart | None:
    """The session's last run if it has not ended yet."""
    last = await reader.last(event_subject(session, "run.queued"))
    if last is None:
        return None
    start = RunStart(stored_seq(last), decode_loose(last.data).run)
    for kind in TERMINAL_TYPES:
        end = await reader.last(event_subject(session, kind))
        if end is not None and stored_seq(end) > start.seq:
            return None
    return start


async def run_start(reader: DirectReader, session: str, run: int) -> int:
    """Where to read from so that run `run` streams from its start: just before its
    `run.queued`, or (not queued yet) after the last run that was."""
    starts = await run_starts(reader, session)
    for start in starts:
        if start.run == run:
            return start.seq - 1
    return starts[-1].seq if starts else 0
