"""A storm's pacing and memory on a real event loop: stream starts per turn (gateway/start_gate.py),
and the recent batches forgotten once it is over (gateway/readcache.py)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.frames import Frame
from gateway.readcache import Batch, SharedBatches
from gateway.start_gate import StartGate
from gateway.telemetry import Stats


class TurnCounter:
    """Counts turns of the running loop (a callback that schedules itself once per turn)."""

    def __init__(self) -> None:
        self.turn = 0
        self._running = True
        asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        self.turn += 1
        if self._running:
            asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        self._running = False


async def test_a_burst_of_starts_runs_a_few_per_turn_in_arrival_order() -> None:
    stats = Stats()
    gate = StartGate(stats, per_turn=4)
    turns = TurnCounter()
    started: list[tuple[int, int]] = []  # (start, turn)

    async def start(i: int) -> None:
        await gate.enter()
        started.append((i, turns.turn))

    # 40 requests whose heads arrived in the same turn, as in a reconnect storm.
    await asyncio.wait_for(asyncio.gather(*(start(i) for i in range(40))), 10)
    turns.stop()

    assert [i for i, _ in started] == list(range(40))  # first come, first served
    per_turn: dict[int, int] = {}
    for _, turn in started:
        per_turn[turn] = per_turn.get(turn, 0) + 1
    assert max(per_turn.values()) <= 4
    assert len(per_turn) >= 10  # spread over at least 40 / 4 turns
    assert stats.stream_starts_paced == 36  # all but the first turn's four waited
    assert gate.waiting == 0


async def test_a_start_whose_request_went_away_gives_its_turn_up() -> None:
    gate = StartGate(Stats(), per_turn=1)
    order: list[str] = []

    async def start(name: str) -> None:
        await gate.enter()
        order.append(name)

    first = asyncio.create_task(start("first"))
    leaver = asyncio.create_task(start("leaver"))
    later = asyncio.create_task(start("later"))
    await asyncio.sleep(0)  # all three asked; one went through, two wait
    leaver.cancel()
    await asyncio.wait_for(asyncio.gather(first, later), 10)
    with pytest.raises(asyncio.CancelledError):
        await leaver
    assert order == ["first", "later"]
    assert gate.waiting == 0


async def test_an_idle_gate_lets_a_start_through_at_once() -> None:
    stats = Stats()
    gate = StartGate(stats, per_turn=4)
    for _ in range(3):
        await gate.enter()  # no waiting: returns without a loop turn
        await asyncio.sleep(0.01)
    assert stats.stream_starts_paced == 0


def test_a_gate_needs_one_start_per_turn() -> None:
    with pytest.raises(ValueError):
        StartGate(Stats(), per_turn=0)


async def test_recent_batches_are_forgotten_after_a_storm_but_reads_in_flight_stay() -> None:
    """The admission's quiet hook (`forget`) drops the batches a storm shared, so their
    memory goes back with the rest; a read still on its way keeps serving its waiters."""
    stats = Stats()
    shared = SharedBatches(stats)
    landed = Batch([Frame(1, "s", "text.delta", b"{}")], pending=0)
    slow = asyncio.get_running_loop().create_future()

    async def read_landed() -> Batch:
        return landed

    async def read_slow() -> Batch:
        return await slow

    assert await shared.get(("s", 1, 10, 1000), 0, read_landed) is landed
    waiting = asyncio.create_task(shared.get(("s", 2, 10, 1000), 0, read_slow))
    await asyncio.sleep(0)
    assert len(shared) == 2 and shared.bytes == 2

    shared.clear()
    assert len(shared) == 1 and shared.bytes == 0  # the landed batch is gone
    slow.set_result(landed)
    assert await waiting is landed
    assert await shared.get(("s", 2, 10, 1000), 0, read_slow) is landed  # shared, not re-read
    assert stats.replay_reads == 2 and stats.replay_reads_shared == 1
