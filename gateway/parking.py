"""Parking: in a reconnect storm, a replay waits as the bytes of its request, not as a request.

A replay waiting in the admission line (gateway/admission.py) holds a whole
request: uvicorn's protocol, parser, cycle and task, and the stream's sink,
subscription and coroutines, about 9 KB of small objects. 2,500 at once grow a
process's heap by ~25 MB, and CPython's allocator keeps most of it after the
storm: the long-lived tasks' futures and timers, reallocated during it, pin
each 1 MiB arena they land in (bench/README.md, storm).

So during a storm (`replay_park_at` replays in line, 1,024 by default, or
anything parked) a new connection is first read by a small protocol. A
connection whose first read is a whole request head asking for a replay
(`GET` of an event stream, without `from=now`) is parked: reading paused, it
holds its transport and those bytes (about 2 KB). Anything else (`/healthz`,
the API, WebSocket upgrades, a head that does not come in one read) goes on at
once; once anything is parked, replay requests park behind it, so the order of
arrival holds. Outside a storm a new connection goes straight to HTTP.

Parked connections go on oldest first as the line shortens, at most
LET_IN_MAX per tick, and each after MAX_PARK_S at the latest, to wait in the
line (told so) as before, so no proxy in front sees a silent connection for
long. One let in counts against the line until its replay reaches it
(admission.ARRIVING, which its request's task inherits) or ARRIVE_S has passed:
counting only the line, each tick would let in more while the last were still
being parsed and routed, and the storm would hold whole requests again. Parked
requests count towards `replay_queue`: past it, a replay goes on and is told to
retry later, as before.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Final, cast

from agentcast._internals import hand_over
from gateway.admission import ARRIVING
from gateway.telemetry import Stats

MAX_PARK_S: Final = 10.0
ARRIVE_S: Final = 2.0
"""A request let in counts against the line until its replay reaches it, or this long."""
FIRST_BYTES_S: Final = 1.0
"""A connection silent this long goes on to the HTTP protocol (and its head timeout)."""
TICK_S: Final = 0.005
"""How often the lot looks at the line while connections are parked."""
LET_IN_MAX: Final = 4
"""At most this many go on per tick (800 a second per process, more than a process
routes): each is parsed, routed and started in the next loop turn, ~1 ms of CPU, and a
burst of them holds /healthz and live delivery behind it (16 per 20 ms: /healthz p99
87-106 ms in a 5,000-client storm; 4 per 5 ms: 75-89 ms; bench/README.md)."""

_REPLAY_HEAD: Final = re.compile(rb"GET /v1/(?:sessions/[^/?\s]+/)?events(?:[?\s])")
_LIVE_ONLY: Final = re.compile(rb"[?&]from=now(?:[&\s])")
_HEAD_END: Final = b"\r\n\r\n"

Protocols = Callable[[], asyncio.Protocol]


def asks_for_replay(head: bytes) -> bool:
    """Whether a whole request head asks for an event stream that starts with a replay."""
    if _REPLAY_HEAD.match(head) is None:
        return False
    line = head[: head.find(b"\r\n")]
    return _LIVE_ONLY.search(line) is None or b"\nlast-event-id:" in head.lower()


class ParkingLot:
    """The parked connections of one process, oldest first, in front of its admission line."""

    def __init__(self, stats: Stats, *, park_at: int, queue_max: int) -> None:
        self._stats = stats
        self._park_at = park_at
        self._queue_max = queue_max
        self._parked: dict[_FirstBytes, float] = {}
        """Each parked connection, with when it was parked; in order of parking."""
        self._arriving = 0
        """Replay requests let in whose replay has not reached the line yet."""
        self._tick: asyncio.TimerHandle | None = None

    def factory(self, protocols: Protocols) -> Protocols:
        """`protocols` for each new connection, read first by `_FirstBytes` during a storm."""
        if self._park_at <= 0:
            return protocols

        def protocol() -> asyncio.Protocol:
            return _FirstBytes(self, protocols) if self._storm() else protocols()

        return protocol

    def _in_line(self) -> int:
        return self._stats.replays_waiting + self._arriving

    def _storm(self) -> bool:
        return bool(self._parked) or self._in_line() >= self._park_at

    def wants(self, head: bytes) -> bool:
        room = self._in_line() + len(self._parked) < self._queue_max
        return room and self._storm() and asks_for_replay(head)

    def park(self, conn: _FirstBytes) -> None:
        loop = asyncio.get_running_loop()
        self._parked[conn] = loop.time()
        self._stats.replays_parked_total += 1
        self._stats.replays_parked = len(self._parked)
        if self._tick is None:
            self._tick = loop.call_later(TICK_S, self._release)

    def leave(self, conn: _FirstBytes) -> None:
        if self._parked.pop(conn, None) is not None:
            self._stats.replays_parked = len(self._parked)

    def _let_in(self, conn: _FirstBytes) -> None:
        self.leave(conn)
        self._arriving += 1
        arrival = _Arrival(self)
        token = ARRIVING.set(arrival.arrived)  # its request's task is created in go_on
        try:
            conn.go_on()
        finally:
            ARRIVING.reset(token)
        arrival.expire_in(ARRIVE_S)

    def _arrived(self) -> None:
        self._arriving -= 1

    def _release(self) -> None:
        """Let the oldest in, as many as the line has room for, and all parked too long."""
        loop = asyncio.get_running_loop()
        self._tick = None
        room = min(self._park_at - self._in_line(), LET_IN_MAX)
        too_old = loop.time() - MAX_PARK_S
        while self._parked:
            conn, since = next(iter(self._parked.items()))
            if room <= 0 and since > too_old:
                break
            room -= 1
            self._let_in(conn)
        if self._parked:
            self._tick = loop.call_later(TICK_S, self._release)

    def release_all(self) -> None:
        """Every parked connection goes on now (shutdown: each is told the truth there)."""
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        while self._parked:
            self._let_in(next(iter(self._parked)))


class _Arrival:
    """One let-in request's place in the line's count, given back once (see the docstring)."""

    __slots__ = ("_lot", "_timer")

    def __init__(self, lot: ParkingLot) -> None:
        self._lot: ParkingLot | None = lot
        self._timer: asyncio.TimerHandle | None = None

    def expire_in(self, delay: float) -> None:
        if self._lot is not None:
            self._timer = asyncio.get_running_loop().call_later(delay, self.arrived)

    def arrived(self) -> None:
        lot, self._lot = self._lot, None
        if lot is not None:
            lot._arrived()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


class _FirstBytes(asyncio.Protocol):
    """A new connection's first protocol during a storm: parks it, or hands it on at once."""

    __slots__ = ("_head", "_lot", "_parked", "_protocols", "_timer", "_transport")

    def __init__(self, lot: ParkingLot, protocols: Protocols) -> None:
        self._lot = lot
        self._protocols: Protocols | None = protocols
        self._transport: asyncio.Transport | None = None
        self._head = b""
        self._parked = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._timer = asyncio.get_running_loop().call_later(FIRST_BYTES_S, self.go_on)

    def data_received(self, data: bytes) -> None:
        self._head += data
        if self._parked or self._protocols is None:
            return
        if _HEAD_END in self._head and self._lot.wants(self._head):
            self._stop_timer()
            assert self._transport is not None
            self._transport.pause_reading()
            self._parked = True
            self._lot.park(self)
        else:
            self.go_on()

    def go_on(self) -> None:
        """Hand the connection, with what it sent, to its HTTP protocol."""
        protocols, self._protocols = self._protocols, None
        transport = self._transport
        if protocols is None or transport is None or transport.is_closing():
            return
        self._stop_timer()
        head, self._head = self._head, b""
        hand_over(transport, protocols(), head)
        if self._parked:
            self._parked = False
            transport.resume_reading()

    def eof_received(self) -> bool | None:
        if self._parked or self._transport is None:
            return None  # the client gave up while parked: close
        self.go_on()  # the HTTP protocol hears the end of what was sent
        protocol = self._transport.get_protocol()
        return protocol.eof_received() if isinstance(protocol, asyncio.Protocol) else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        self._lot.leave(self)
        self._protocols = None

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
