"""Pacing many sessions from one loop: events spread evenly over time and sessions.

The k-th event of a run is due at k / (sessions x rate) seconds and belongs to
session k mod sessions, as independent agents would produce them. A tick
therefore costs the events due in it, not one visit per session: at 1,000
sessions x 20 events/s and a 10 ms tick, 200 events, where a scan of every
session would cost 1,000 visits and send the events in one burst per
session period. Used by the synthetic producer (producer/synthetic.py) and the
benchmark feed (bench/_feed.py).
"""

from __future__ import annotations

from collections.abc import Iterator


class EvenPacer:
    """Which sessions emit now: `due(elapsed)` yields session indexes, in event order."""

    def __init__(self, sessions: int, rate: float, *, limit: int | None = None) -> None:
        """`rate` events/s per session (> 0); `limit` bounds the events in all."""
        if sessions < 1 or rate <= 0:
            raise ValueError("a pacer needs at least one session and a rate above 0")
        self.sessions = sessions
        self.total_rate = sessions * rate
        self.limit = limit
        self.sent = 0

    def due(self, elapsed: float) -> Iterator[int]:
        """The session index of every event due by `elapsed` seconds and not yet yielded."""
        due = int(elapsed * self.total_rate) + 1
        if self.limit is not None:
            due = min(due, self.limit)
        while self.sent < due:
            index = self.sent % self.sessions
            self.sent += 1
            yield index

    @property
    def exhausted(self) -> bool:
        return self.limit is not None and self.sent >= self.limit
