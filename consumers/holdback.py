"""Per-session reorder buffer: events are applied in `seq` order, whatever order they arrive in.

JetStream delivers a consumer's messages in stream order, but not always in
`seq` order per session: a redelivery comes back after newer messages. Both
consumers (archive, progress) keep, per session, the last seq they applied;
an event at or below it is a repeat, the next one is applied, and one beyond
it waits here until the missing seqs arrive (they are unacknowledged, so
JetStream brings them back) or the gap times out.

A session has one writer, which JetStream holds to seq order: each event is
stored only after the one before it (producer/publisher.py). So an event
held here that the session's in-order events overtake in the stream (one
stored after it applies before it) is not the writer's: a forgery, held
back and never applied. It is released neither when its seq comes up (the
real event of that seq supersedes it) nor at the gap timeout (then it is
handed back as a suspect); a gap is recorded only when nothing of the
session came after the held event, i.e. its writer really skipped.

Bounded: held events are never acknowledged, so JetStream stops delivering
once `max_ack_pending` of them are outstanding.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Generic, NamedTuple, TypeVar

T = TypeVar("T")


class Held(NamedTuple, Generic[T]):
    seq: int
    stream_seq: int
    item: T


class Holdback(Generic[T]):
    """Events waiting for an earlier seq of their session."""

    def __init__(self, gap_timeout_s: float) -> None:
        self.gap_timeout_s = gap_timeout_s
        self._held: dict[str, dict[int, Held[T]]] = {}
        self._since: dict[str, float] = {}
        # Per session, the newest stream position of an event applied in order.
        self._applied_at: dict[str, int] = {}

    def __len__(self) -> int:
        return sum(len(h) for h in self._held.values())

    def __bool__(self) -> bool:
        return bool(self._held)

    def hold(self, session: str, seq: int, stream_seq: int, item: T) -> Held[T] | None:
        """Keep an event that arrived before its predecessor.

        A redelivery (same stream position) replaces the copy. Another message
        with a held seq is not kept: it is returned, a suspect for the caller.
        """
        held = self._held.setdefault(session, {})
        self._since.setdefault(session, time.monotonic())
        new = Held(seq, stream_seq, item)
        old = held.get(seq)
        if old is None or old.stream_seq == stream_seq:
            held[seq] = new
            return None
        if stream_seq > old.stream_seq:
            return new
        held[seq] = new  # the one stored first stays, as the stream has them
        return old

    def release(self, session: str, next_seq: int, after_stream_seq: int) -> Iterator[Held[T]]:
        """Pop the held events that now follow on, starting at `next_seq`.

        Each must have been stored after the event before it (`after_stream_seq`
        for the first): one stored earlier was overtaken, see the module doc.
        """
        held = self._held.get(session)
        if not held:
            return
        released = False
        while (h := held.get(next_seq)) is not None and h.stream_seq > after_stream_seq:
            del held[next_seq]
            yield h
            released = True
            next_seq += 1
            after_stream_seq = h.stream_seq
        if not held:
            self._forget(session)
        elif released:
            # What is still held waits for a newer gap: restart its clock.
            self._since[session] = time.monotonic()

    def applied(self, session: str, seq: int, stream_seq: int) -> list[Held[T]]:
        """An event of a held session was applied in order: pop the held ones it supersedes."""
        held = self._held.get(session)
        if not held:
            return []
        if stream_seq > self._applied_at.get(session, 0):
            self._applied_at[session] = stream_seq
        gone = [held.pop(s) for s in sorted(held) if s <= seq]
        if not held:
            self._forget(session)
        return gone

    def overtaken(self, session: str) -> list[Held[T]]:
        """Pop the held events of a session that in-order events came after (suspects)."""
        held = self._held.get(session)
        after = self._applied_at.get(session, 0)
        if not held:
            return []
        gone = [held.pop(s) for s in sorted(held) if held[s].stream_seq < after]
        if not held:
            self._forget(session)
        return gone

    def _forget(self, session: str) -> None:
        self._held.pop(session, None)
        self._since.pop(session, None)
        self._applied_at.pop(session, None)

    def first_held(self, session: str) -> int | None:
        """The lowest held seq of a session."""
        held = self._held.get(session)
        return min(held) if held else None

    def expired(self, now: float | None = None) -> list[str]:
        """Sessions whose gap has waited longer than the timeout."""
        now = time.monotonic() if now is None else now
        return [s for s, t in self._since.items() if now - t >= self.gap_timeout_s]

    def min_stream_seq(self) -> int | None:
        """The oldest stream position still held: nothing at or past it may be acknowledged."""
        if not self._held:
            return None
        return min(h.stream_seq for held in self._held.values() for h in held.values())

    def clear(self) -> None:
        """Forget everything (after a resync JetStream delivers it all again)."""
        self._held.clear()
        self._since.clear()
        self._applied_at.clear()
