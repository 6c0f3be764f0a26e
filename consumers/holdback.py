"""Per-session reorder buffer: events are applied in `seq` order, whatever order they arrive in.

JetStream delivers a consumer's messages in stream order, but not always in
`seq` order per session: a redelivery comes back after newer messages, and a
producer that retried a publish may have stored seq 6 before seq 5. Both
consumers (archive, progress) keep, per session, the last seq they applied;
an event at or below it is a repeat, the next one is applied, and one beyond
it waits here until the missing seqs arrive (they are unacknowledged, so
JetStream brings them back) or the gap times out.

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

    def __len__(self) -> int:
        return sum(len(h) for h in self._held.values())

    def __bool__(self) -> bool:
        return bool(self._held)

    def hold(self, session: str, seq: int, stream_seq: int, item: T) -> None:
        """Keep an event that arrived before its predecessor (a repeat replaces the copy)."""
        held = self._held.setdefault(session, {})
        held[seq] = Held(seq, stream_seq, item)
        self._since.setdefault(session, time.monotonic())

    def release(self, session: str, next_seq: int) -> Iterator[Held[T]]:
        """Pop the held events that now follow on, starting at `next_seq`."""
        held = self._held.get(session)
        if not held:
            return
        while next_seq in held:
            yield held.pop(next_seq)
            next_seq += 1
        if not held:
            del self._held[session]
            del self._since[session]
        else:
            # What is still held waits for a newer gap: restart its clock.
            self._since[session] = time.monotonic()

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
