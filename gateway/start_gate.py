"""Stream starts paced per event-loop turn, so a reconnect storm never holds the loop for long.

Starting a stream (routing, the token, the parameters, a stream slot,
subscribing) costs about a millisecond of CPU, and a storm delivers them in
bursts: each turn of the loop, every request whose head arrived since the
last turn would start at once. With a hundred in one turn, that turn takes a
hundred milliseconds, and everything else the process does (a `/healthz`
probe, an API call, live delivery to the streams already open) waits for it.

So at most `per_turn` streams start in one turn; the others wait for later
turns in arrival order. A storm then takes as much CPU as before, spread over
many short turns, between which everything else runs. API calls and
operations routes never wait here.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final

from gateway.telemetry import Stats

STARTS_PER_TURN: Final = 4
"""Streams started in one turn of the loop: a few milliseconds of work at most."""


class StartGate:
    """Admits at most `per_turn` stream starts per loop turn, the rest first come first served."""

    def __init__(self, stats: Stats, per_turn: int = STARTS_PER_TURN) -> None:
        if per_turn < 1:
            raise ValueError("a start gate needs at least one start per turn")
        self._stats = stats
        self.per_turn = per_turn
        self._started = 0
        """Starts let through since the last turn began."""
        self._line: deque[asyncio.Future[None]] = deque()
        self._turn: asyncio.Handle | None = None

    async def enter(self) -> None:
        """Return when this start may run (at once, or after the ones that came first)."""
        if self._started < self.per_turn and not self._line:
            self._started += 1
            self._next_turn_soon()
            return
        turn = asyncio.get_running_loop().create_future()
        self._line.append(turn)
        self._stats.stream_starts_paced += 1
        self._next_turn_soon()
        await turn  # cancelled (the request went away): skipped when reached

    def _next_turn_soon(self) -> None:
        if self._turn is None:
            self._turn = asyncio.get_running_loop().call_soon(self._new_turn)

    def _new_turn(self) -> None:
        """Runs once per loop turn while starts are waiting: lets the next `per_turn` go.
        They run in the following turn, with the starts that arrive meanwhile."""
        self._turn = None
        self._started = 0
        while self._line and self._started < self.per_turn:
            turn = self._line.popleft()
            if not turn.done():
                turn.set_result(None)
                self._started += 1
        if self._line or self._started:
            self._next_turn_soon()

    @property
    def waiting(self) -> int:
        return len(self._line)
