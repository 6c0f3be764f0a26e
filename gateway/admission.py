"""Admission control for replays: a bounded number at once per process, the rest in line.

A reconnect storm (every dashboard of an installation reconnecting after a
deploy) starts thousands of replays at once. Run all at once, they share the
process's one NATS connection and event loop: reads time out, memory grows
with every replay started, and /healthz and live delivery wait behind them.
So at most `limit` replays run at once; the others wait in arrival order
(first come, first served; a slot freed is handed to the oldest waiter, never
taken by a newcomer), at most `queue_max` of them and for `wait_s` at most.
A replay that cannot be admitted is told the truth, `ReplayBusy`, with a
retry delay spread at random so that the refused do not come back together.
Live delivery never waits here: only replays (catch-up from JetStream) do.

While replays wait in line (a storm), CPython's automatic garbage collection
is suspended: a storm is a burst of new long-lived objects (every connection's
protocol, task, sink), and each 25% growth of those starts a full collection
that rescans all of them, pausing the event loop (and /healthz, and live
delivery) for 100-400 ms each time on two cores. It resumes when the line is
empty (or after 30 s at most); shortly after, one collection and a heap trim hand the storm's memory back.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import random
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from typing import Final

from agentcast.errors import AgentcastError
from agentcast.settings import Settings
from gateway.telemetry import Stats

logger = logging.getLogger(__name__)

RETRY_BASE_S: Final = 2.0
GC_PAUSE_MAX_S: Final = 30.0
"""Longest automatic collection stays off during one storm."""
TRIM_AFTER_S: Final = 2.0
"""Once no replay has run for this long after a storm, free memory goes back to the system."""
RETRY_SPREAD_S: Final = 8.0


def retry_after_s() -> float:
    """A retry delay with jitter: 2 to 10 s."""
    return RETRY_BASE_S + random.uniform(0.0, RETRY_SPREAD_S)


ARRIVING: Final[ContextVar[Callable[[], None] | None]] = ContextVar(
    "agentcast_replay_arriving", default=None
)
"""Set by the door (gateway/parking.py) on a request it let in during a storm: called as its
replay reaches the line, which then counts it."""

_Waiter = tuple[asyncio.Future[bool], Callable[[], bool], float]
"""A place in line: its turn, whether its client left, and when it gives up (loop time)."""


class ReplayBusy(AgentcastError):
    """Too many replays are running or waiting in this process; retry after `retry_after_s`."""

    code = "replay_busy"

    def __init__(self, why: str) -> None:
        self.retry_after_s = retry_after_s()
        super().__init__(f"replays busy: {why}; retry in {self.retry_after_s:.1f} s")


class Admission:
    """Slots for concurrent replays, handed out in arrival order (see the module docstring)."""

    def __init__(
        self, stats: Stats, *, limit: int, queue_max: int, wait_s: float,
        forget: Callable[[], None] = lambda: None,
    ) -> None:  # fmt: skip
        if limit < 1:
            raise ValueError("replay admission needs a limit of at least 1")
        self._stats = stats
        self.limit = limit
        self.queue_max = queue_max
        self.wait_s = wait_s
        self.active = 0
        self.waiting = 0
        self._line: deque[_Waiter] = deque()
        """Waiters in arrival order, each with its `gone()` and deadline; those that gave up
        are done."""
        self._expiry: asyncio.TimerHandle | None = None
        self._trimmed_at = 0
        self._trim: asyncio.TimerHandle | None = None
        self._gc_resume: asyncio.TimerHandle | None = None
        """Set while a storm holds automatic collection off (see the module docstring)."""
        self._forget = forget
        """Drops what the storm's replays shared (recent batches), before the heap is trimmed."""

    @classmethod
    def of(
        cls, settings: Settings, stats: Stats, forget: Callable[[], None] = lambda: None
    ) -> Admission:
        return cls(
            stats,
            limit=settings.replay_concurrency,
            queue_max=settings.replay_queue,
            wait_s=settings.replay_wait_s,
            forget=forget,
        )

    def slot(
        self,
        on_queued: Callable[[int], None] | None = None,
        gone: Callable[[], bool] | None = None,
    ) -> ReplaySlot:
        """Hold a replay slot for an `async with` block (entered as True); waits in line
        (calling `on_queued(ahead)` once) when none is free, and raises ReplayBusy when the
        line is full or the wait too long. A waiter whose `gone()` turns true (its client
        left) is dropped from the line when reached, or when the line is full, and enters
        as False."""
        return ReplaySlot(self, on_queued, gone or _never)

    async def _wait(
        self, on_queued: Callable[[int], None] | None, gone: Callable[[], bool]
    ) -> bool:
        # Replays parked at the door (gateway/parking.py) are in line too.
        if self.waiting + self._stats.replays_parked >= self.queue_max:
            self._drop_gone()
            if (waiting := self.waiting + self._stats.replays_parked) >= self.queue_max:
                self._stats.replays_refused += 1
                raise ReplayBusy(f"{waiting} replays are waiting")
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[bool] = loop.create_future()
        # Every waiter waits at most wait_s, so deadlines grow along the line: one timer, for
        # the oldest, expires them all (a timer and a shield per waiter cost ~1 KB each).
        self._line.append((turn, gone, loop.time() + self.wait_s))
        self._count_waiting(+1)
        if self._expiry is None:
            self._expire_soon()
        if self._gc_resume is None and gc.isenabled():
            gc.disable()
            # Bounded: a line that never empties must not keep garbage uncollected for good.
            self._gc_resume = loop.call_later(GC_PAUSE_MAX_S, self._resume_gc)
        self._stats.replays_queued += 1
        if on_queued is not None:
            on_queued(self.waiting - 1)
        try:
            return await turn  # True: admitted; False: dropped, gone; ReplayBusy: expired
        except asyncio.CancelledError:
            if turn.cancelled():
                self._count_waiting(-1)  # its place is skipped when reached
            elif turn.exception() is None and turn.result():
                self._release()  # the slot came as we gave up: pass it on
            raise

    def _expire_soon(self) -> None:
        """Arm the one timer for the oldest waiter's deadline."""
        self._expiry = None
        while self._line and self._line[0][0].done():
            self._line.popleft()
        if self._line:
            when = self._line[0][2]
            self._expiry = asyncio.get_running_loop().call_at(when, self._expire)

    def _expire(self) -> None:
        now = asyncio.get_running_loop().time()
        while self._line and self._line[0][2] <= now:
            turn, _, _ = self._line.popleft()
            if not turn.done():
                self._count_waiting(-1)
                self._stats.replays_refused += 1
                turn.set_exception(ReplayBusy(f"no replay slot within {self.wait_s:g} s"))
        self._expire_soon()

    def _drop_gone(self) -> None:
        """Give up the places of waiters whose clients left (scanned only when the line is full)."""
        kept: deque[_Waiter] = deque()
        for waiter in self._line:
            turn, gone, _ = waiter
            if turn.done():
                continue
            if gone():
                self._count_waiting(-1)
                turn.set_result(False)
            else:
                kept.append(waiter)
        self._line = kept

    def _take(self) -> None:
        self.active += 1
        self._stats.replays_active = self.active

    def _release(self) -> None:
        self.active -= 1
        while self._line:
            turn, gone, _ = self._line.popleft()
            if turn.done():  # gave up waiting
                continue
            self._count_waiting(-1)
            if gone():
                turn.set_result(False)
                continue
            self._take()
            turn.set_result(True)
            break
        self._stats.replays_active = self.active
        if not self.waiting and self._gc_resume is not None:
            self._resume_gc()
            self._gc_resume = None
        if not self.active and self._stats.replays_queued > self._trimmed_at:
            # A storm ended (replays had to wait): once it is quiet, hand memory back.
            self._trimmed_at = self._stats.replays_queued
            if self._trim is not None:
                self._trim.cancel()
            self._trim = asyncio.get_running_loop().call_later(TRIM_AFTER_S, self._trim_heap)

    def _trim_heap(self) -> None:
        if not self.active:  # still quiet
            self._forget()
        _trim_heap()

    def _resume_gc(self) -> None:
        """Collection on again (the line emptied, or the pause reached its bound: then it
        stays on until the line has emptied once)."""
        if self._gc_resume is not None:
            self._gc_resume.cancel()
        gc.enable()

    def close(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        if self._gc_resume is not None:
            self._resume_gc()
            self._gc_resume = None
        if self._trim is not None:
            self._trim.cancel()

    def _count_waiting(self, delta: int) -> None:
        self.waiting += delta
        self._stats.replays_waiting = self.waiting


class ReplaySlot:
    """`Admission.slot`'s block. A class rather than an `@asynccontextmanager`: a replay
    waiting in line would hold that one's async generator, its frame and asyncio's weak
    reference to it (~800 bytes; thousands wait during a storm)."""

    __slots__ = ("_admission", "_gone", "_held", "_on_queued")

    def __init__(
        self, admission: Admission, on_queued: Callable[[int], None] | None,
        gone: Callable[[], bool],
    ) -> None:  # fmt: skip
        self._admission = admission
        self._on_queued = on_queued
        self._gone = gone
        self._held = False

    async def __aenter__(self) -> bool:
        arrived = ARRIVING.get()
        if arrived is not None:
            arrived()
        admission = self._admission
        if admission.active < admission.limit and not admission.waiting:
            admission._take()
            self._held = True
        else:  # awaited here, not through another coroutine: the waiter holds one frame less
            self._held = await admission._wait(self._on_queued, self._gone)
        return self._held

    async def __aexit__(self, *exc_info: object) -> None:
        if self._held:
            self._held = False
            self._admission._release()


def _never() -> bool:
    return False


def _trim_heap() -> None:
    """Collect the storm's cyclic garbage, then return the C heap's free pages to the
    system (glibc's malloc_trim; elsewhere nothing): glibc keeps freed pages in its
    arenas, so RSS would stay at the storm's peak."""
    gc.collect()
    name = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError) as exc:
        logger.debug("malloc_trim unavailable: %r", exc)
