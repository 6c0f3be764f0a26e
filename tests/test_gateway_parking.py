"""The door in front of the replay line (gateway/parking.py), on real loopback connections.

A real asyncio server accepts through the lot's protocol factory. Behind it, in
place of uvicorn's protocol, `Behind` records each request head handed on and
the arrival callback its context carries (uvicorn creates a request's task inside
`data_received`, so the task inherits that context; tests/test_gateway_storm.py
runs the whole path on a real gateway). The line's length is the real
`Stats.replays_waiting`, set here as the admission line would set it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from gateway import parking
from gateway.admission import ARRIVING
from gateway.parking import ParkingLot
from gateway.telemetry import Stats

PARK_AT = 2
REPLAY = b"GET /v1/sessions/s1/events?from=start HTTP/1.1\r\nhost: gw\r\n\r\n"
PROBE = b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n"
GUARD_S = 10.0
SETTLE_S = 0.3
"""Sixty of the lot's ticks: long enough for it to let in anything it would."""


@dataclass
class Behind:
    """What reached the HTTP protocol: each head, with the arrival callback it came with."""

    heads: list[bytes] = field(default_factory=list)
    arrivals: list[Callable[[], None] | None] = field(default_factory=list)

    def protocol(self) -> asyncio.Protocol:
        behind = self

        class Http(asyncio.Protocol):
            def data_received(self, data: bytes) -> None:
                behind.heads.append(data)
                behind.arrivals.append(ARRIVING.get())

        return Http()


@dataclass
class Door:
    lot: ParkingLot
    stats: Stats
    behind: Behind
    port: int
    clients: list[asyncio.StreamWriter] = field(default_factory=list)

    async def send(self, head: bytes) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(head)
        await writer.drain()
        self.clients.append(writer)


@pytest.fixture
async def door() -> AsyncIterator[Door]:
    stats = Stats()
    lot = ParkingLot(stats, park_at=PARK_AT, queue_max=100)
    behind = Behind()
    server = await asyncio.get_running_loop().create_server(
        lot.factory(behind.protocol), "127.0.0.1", 0
    )
    door = Door(lot, stats, behind, server.sockets[0].getsockname()[1])
    try:
        yield door
    finally:
        lot.release_all()
        for writer in door.clients:
            writer.close()
        server.close()
        await server.wait_closed()


async def _until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + GUARD_S
    while not predicate():
        assert time.monotonic() < deadline, f"hang guard: {what}"
        await asyncio.sleep(0.01)


async def test_outside_a_storm_connections_go_straight_to_http(door: Door) -> None:
    await door.send(REPLAY)
    await _until(lambda: len(door.behind.heads) == 1, "handed on")
    assert door.behind.arrivals == [None]  # nothing in between, nothing to count
    assert door.stats.replays_parked_total == 0


async def test_let_in_replays_count_against_the_line_until_they_reach_it(
    door: Door, monkeypatch: pytest.MonkeyPatch
) -> None:
    stats, behind = door.stats, door.behind
    stats.replays_waiting = PARK_AT  # the line is long: a storm
    for _ in range(6):
        await door.send(REPLAY)
    await _until(lambda: stats.replays_parked == 6, "parked")
    assert behind.heads == []

    stats.replays_waiting = 0  # the line emptied: room for PARK_AT
    await _until(lambda: len(behind.heads) == PARK_AT, "first let in")
    await asyncio.sleep(SETTLE_S)
    # On their way, not yet in line: counting only the line would let all 6 in by now.
    assert len(behind.heads) == PARK_AT and stats.replays_parked == 6 - PARK_AT
    assert all(head == REPLAY for head in behind.heads)  # the whole head, as it was sent

    for arrived in behind.arrivals:
        assert arrived is not None
        arrived()
        arrived()  # once only
    stats.replays_waiting = PARK_AT  # ... and the line counts them now
    await asyncio.sleep(SETTLE_S)
    assert len(behind.heads) == PARK_AT

    monkeypatch.setattr(parking, "ARRIVE_S", SETTLE_S)
    stats.replays_waiting = 0  # admitted: the next two go on
    await _until(lambda: len(behind.heads) == 2 * PARK_AT, "second let in")
    # These never reach the line (their request was answered otherwise): after ARRIVE_S
    # their places are given back anyway.
    await _until(lambda: len(behind.heads) == 3 * PARK_AT, "places given back")
    assert stats.replays_parked == 0
    assert stats.replays_parked_total == 6


async def test_in_a_storm_other_requests_go_on_at_once(door: Door) -> None:
    door.stats.replays_waiting = PARK_AT
    await door.send(REPLAY)
    await _until(lambda: door.stats.replays_parked == 1, "parked")
    await door.send(PROBE)
    await _until(lambda: door.behind.heads == [PROBE], "the probe went on")
    assert door.behind.arrivals == [None]  # not a replay: not counted against the line
