"""Reconnect storms against a real gateway: admission, truthful hints, coalesced reads.

The gateway here admits one replay at a time (`AGENTCAST_REPLAY_CONCURRENCY=1`)
and lets 30 wait; a client that never reads holds the one slot, so the line
forms deterministically. The big storms (2,000 and 5,000 clients, with times)
are in bench/storm.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest
from nats.js import JetStreamContext

from agentcast.embedded import EmbeddedNats
from agentcast.events import TextDeltaData
from gateway.admission import Admission, ReplayBusy
from gateway.frames import Frame
from gateway.readcache import Batch, SharedBatches
from gateway.telemetry import Stats
from tests.support.events import build_events, publish_events
from tests.support.gateway import GatewayProcess, auth, token
from tests.support.nats import PrivateNats, role_env
from tests.support.storm import Replay, publish_session, replay, stalled_reader

QUEUE = 30
EVENTS = 200
HOLDER_EVENTS = 3000
"""x 2 KB: more than the kernel's socket buffers take, so the holder's replay cannot end."""
BATCH = 16
GUARD_S = 60.0


@contextmanager
def _narrow(nats_server: EmbeddedNats, tmp_path: Path, **env: str) -> Iterator[GatewayProcess]:
    narrow = {
        "AGENTCAST_REPLAY_CONCURRENCY": "1",
        "AGENTCAST_REPLAY_QUEUE": str(QUEUE),
        "AGENTCAST_REPLAY_BATCH": str(BATCH),
    }
    env = {**role_env(nats_server, "gateway"), **narrow, **env}
    proc = GatewayProcess(nats_server.url, tmp_path / "gw", env=env)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def narrow_gateway(nats_server: EmbeddedNats, tmp_path: Path) -> Iterator[GatewayProcess]:
    with _narrow(nats_server, tmp_path) as proc:
        yield proc


@asynccontextmanager
async def _slot_held(
    gw: GatewayProcess, js: JetStreamContext, session_id: str
) -> AsyncIterator[socket.socket]:
    """The gateway's one replay slot, held by a client that never reads: the line forms
    behind it until the holder is closed."""
    big = session_id + "_big"
    await publish_session(js, big, HOLDER_EVENTS, size=2000)
    holder = stalled_reader(gw.port, f"/v1/sessions/{big}/events", token())
    try:
        await _until(lambda: gw.metric("agentcast_gateway_replays_active") == 1, "slot held")
        yield holder
    finally:
        holder.close()


def _replays(client: httpx.AsyncClient, session_id: str, count: int) -> list[asyncio.Task[Replay]]:
    return [
        asyncio.create_task(replay(client, session_id, EVENTS, headers=auth()))
        for _ in range(count)
    ]


async def _until(predicate: object, what: str) -> None:
    deadline = time.monotonic() + GUARD_S
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"hang guard: {what}"
        await asyncio.sleep(0.05)


async def test_a_storm_past_the_admission_bound_completes_exactly_once(
    narrow_gateway: GatewayProcess, js: JetStreamContext, session_id: str
) -> None:
    gw = narrow_gateway
    await publish_session(js, session_id, EVENTS)
    async with (
        _slot_held(gw, js, session_id) as holder,
        httpx.AsyncClient(base_url=gw.url, timeout=GUARD_S) as client,
    ):
        queued = _replays(client, session_id, QUEUE)
        await _until(lambda: gw.metric("agentcast_gateway_replays_waiting") == QUEUE, "line full")
        # One more than the line holds: told the truth, with a spread retry delay.
        refused = await replay(client, session_id, EVENTS, headers=auth())
        holder.close()
        done = await asyncio.gather(*queued)

    assert refused.ended and refused.seqs == []
    assert any(c.startswith("replays busy") for c in refused.comments), refused.comments
    assert 2000 <= refused.retries[-1] <= 10_000
    for seen in done:
        assert seen.seqs == list(range(1, EVENTS + 1))  # every event, once, in order
        assert any(c.startswith("waiting for a replay slot") for c in seen.comments)
    for seen in [refused, *done]:
        assert not any("restarting" in c for c in seen.comments)
    assert gw.metric("agentcast_gateway_replays_refused_total") == 1
    assert gw.metric("agentcast_gateway_replays_queued_total") >= QUEUE


async def test_replays_of_one_session_read_each_batch_once(
    gateway: GatewayProcess, js: JetStreamContext, session_id: str
) -> None:
    clients = 40
    count = 3 * 256 + 10  # the default batch: 3 full batches and a last one
    await publish_session(js, session_id, count)
    reads = gateway.metric("agentcast_gateway_replay_reads_total")
    shared = gateway.metric("agentcast_gateway_replay_reads_shared_total")
    async with httpx.AsyncClient(base_url=gateway.url, timeout=GUARD_S) as client:
        done = await asyncio.gather(
            *(replay(client, session_id, count, headers=auth()) for _ in range(clients))
        )
    assert all(seen.seqs == list(range(1, count + 1)) for seen in done)
    reads = gateway.metric("agentcast_gateway_replay_reads_total") - reads
    shared = gateway.metric("agentcast_gateway_replay_reads_shared_total") - shared
    asks = clients * 4
    # Other tests' replays may share this gateway: count what this storm could have caused.
    assert reads + shared >= asks
    # Full batches are read once; the last one at most once per client that came later.
    assert shared >= asks - (3 + clients), (reads, shared)


async def test_replays_one_after_another_share_the_last_batch_until_the_topic_hears_more(
    narrow_gateway: GatewayProcess, js: JetStreamContext, session_id: str
) -> None:
    """Replays of a finished session that arrive one after another (as browsers retrying
    with jitter do) share the last batch read while the session's topic has heard nothing
    newer; once it has, the next replay reads again and gets the new event. (A gateway of
    its own: after another test's storm, its quiet hook may drop the shared batches.)"""
    gateway = narrow_gateway
    count = 2 * BATCH + 5  # two full batches and a last one
    await publish_session(js, session_id, count)
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=GUARD_S) as client,
        # A live viewer keeps the session's topic open, as a dashboard does.
        client.stream(
            "GET", f"/v1/sessions/{session_id}/events", params={"from": "now"}, headers=auth()
        ) as live,
    ):
        assert live.status_code == 200
        first = await replay(client, session_id, count, headers=auth())
        reads = gateway.metric("agentcast_gateway_replay_reads_total")
        later = [await replay(client, session_id, count, headers=auth()) for _ in range(3)]
        shared_reads = gateway.metric("agentcast_gateway_replay_reads_total") - reads

        datas = [TextDeltaData(index=0, text="one more")]
        await publish_events(js, build_events(session_id, datas, first_seq=count + 1))
        lines = live.aiter_lines()  # kept: closing it would end the viewer, and the topic
        async with asyncio.timeout(GUARD_S):  # hang guard
            while not (line := await anext(lines)).startswith("data: ") or (
                json.loads(line[6:])["seq"] != count + 1
            ):
                pass  # until the topic has heard it
        reads = gateway.metric("agentcast_gateway_replay_reads_total")
        after = await replay(client, session_id, count + 1, headers=auth(), timeout=GUARD_S)
        fresh_reads = gateway.metric("agentcast_gateway_replay_reads_total") - reads

    for seen in [first, *later]:
        assert seen.seqs == list(range(1, count + 1))
    assert shared_reads == 0  # each came after the last read, and still shared it
    assert after.seqs == list(range(1, count + 2))  # the new event, exactly once
    assert fresh_reads >= 1


async def test_a_last_batch_serves_later_replays_only_as_far_as_their_topic_heard() -> None:
    """Pure asyncio: the sharing rule itself (gateway/readcache.py), tick by tick."""
    shared = SharedBatches(Stats())
    frame = Frame(seq=7, session="s", type="text.delta", payload=b"x")
    last = Batch([frame], pending=0)
    reads = 0

    async def read() -> Batch:
        nonlocal reads
        reads += 1
        return last

    key = ("s", 5, 10, 1000)
    topic_mark = shared.mark()  # the topic subscribed
    first = shared.mark()  # a replay attached
    assert await shared.get(key, first, read, live_mark=topic_mark, live_seen=0) is last
    later = shared.mark()  # another attached after that read was sent
    assert await shared.get(key, later, read) is last and reads == 2  # its own tick: read again
    latest = shared.mark()
    # The topic had heard up to 7 (the batch's reach) when it attached: shared.
    assert await shared.get(key, latest, read, live_mark=topic_mark, live_seen=7) is last
    assert reads == 2
    # The topic had heard seq 8: the batch no longer reaches it.
    assert await shared.get(key, shared.mark(), read, live_mark=topic_mark, live_seen=8) is last
    assert reads == 3
    # A topic that subscribed after the read was sent may have missed what came in between.
    newer_topic = shared.mark()
    assert await shared.get(key, shared.mark(), read, live_mark=newer_topic, live_seen=0) is last
    assert reads == 4


async def test_a_stalled_nats_gets_json_503s_not_hangs(
    private_nats: PrivateNats, tmp_path: Path, session_id: str
) -> None:
    """SIGSTOP on the test's own nats-server: every API call answers 503 (the 2 s / 1 s
    figures are bench/storm.py's; here only the answers, with hang guards)."""
    js = private_nats.nc.jetstream()
    await publish_session(js, session_id, 3)
    server = private_nats.server
    gw = GatewayProcess(server.url, tmp_path / "gw", env=role_env(server, "gateway"))
    gw.start()
    assert server.pid is not None
    try:
        os.kill(server.pid, signal.SIGSTOP)
        async with httpx.AsyncClient(base_url=gw.url, timeout=GUARD_S) as client:
            run = auth(("read", "run"))
            answers = [
                await client.get(f"/v1/sessions/{session_id}", headers=run),
                await client.get("/v1/sessions", headers=run),
                await client.post("/v1/runs", json={"prompt": "hi"}, headers=run),
                await client.post(f"/v1/sessions/{session_id}/cancel", headers=run),
                await client.get(
                    f"/v1/sessions/{session_id}/events", params={"from": "1"}, headers=run
                ),
            ]
            ready = await client.get("/readyz")
    finally:
        os.kill(server.pid, signal.SIGCONT)
        gw.stop()
    for answer in answers:
        assert answer.status_code == 503, (answer.request.url, answer.text)
        assert answer.json()["error"]["code"] == "nats_unavailable"
        assert int(answer.headers["Retry-After"]) >= 1
    assert ready.status_code == 503 and ready.json()["error"]["code"] == "not_ready"


async def test_a_waiter_whose_client_left_gives_its_place_up() -> None:
    """Pure asyncio: one slot, a line of one; the waiter whose client left is dropped when
    the line is full, so the next one gets its place, and then the slot."""
    admission = Admission(Stats(), limit=1, queue_max=1, wait_s=GUARD_S)
    left = False
    order: list[str] = []

    async def replay_(name: str, gone: Callable[[], bool]) -> None:
        async with admission.slot(gone=gone) as admitted:
            order.append(f"{name} {admitted}")

    async with admission.slot():  # the one slot
        leaver = asyncio.create_task(replay_("leaver", lambda: left))
        await asyncio.sleep(0)
        assert admission.waiting == 1
        left = True
        later = asyncio.create_task(replay_("later", lambda: False))
        await asyncio.sleep(0)
        assert admission.waiting == 1  # the line was full: the leaver's place went to later
        with pytest.raises(ReplayBusy):  # full of a live waiter now: refused at once
            async with admission.slot():
                pass
    await asyncio.wait_for(asyncio.gather(leaver, later), GUARD_S)
    assert order == ["leaver False", "later True"]


async def test_waiters_past_the_wait_bound_are_told_to_retry_in_arrival_order() -> None:
    """Pure asyncio: one slot held for good; the line's waiters give up after wait_s, oldest
    first, each with a truthful retry hint, and a waiter that left before is not counted."""
    stats = Stats()
    admission = Admission(stats, limit=1, queue_max=10, wait_s=0.2)
    refused: list[tuple[str, float]] = []

    async def replay_(name: str) -> None:
        try:
            async with admission.slot():
                raise AssertionError("the slot is never free")
        except ReplayBusy as exc:
            refused.append((name, exc.retry_after_s))

    async with admission.slot():
        first = asyncio.create_task(replay_("first"))
        await asyncio.sleep(0.05)
        leaver = asyncio.create_task(replay_("leaver"))
        second = asyncio.create_task(replay_("second"))
        await asyncio.sleep(0)
        assert admission.waiting == 3
        leaver.cancel()
        await asyncio.wait_for(asyncio.gather(first, second), GUARD_S)
        with pytest.raises(asyncio.CancelledError):
            await leaver
        assert admission.waiting == 0
    assert [name for name, _ in refused] == ["first", "second"]
    assert all(2.0 <= after <= 10.0 for _, after in refused)
    assert stats.replays_refused == 2 and stats.replays_queued == 3
    assert admission.active == 0


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


PARK_AT = 4


@pytest.fixture
def parking_gateway(nats_server: EmbeddedNats, tmp_path: Path) -> Iterator[GatewayProcess]:
    with _narrow(nats_server, tmp_path, AGENTCAST_REPLAY_PARK_AT=str(PARK_AT)) as proc:
        yield proc


async def test_replays_past_the_park_line_wait_parked_and_still_complete_exactly_once(
    parking_gateway: GatewayProcess, js: JetStreamContext, session_id: str
) -> None:
    gw = parking_gateway
    await publish_session(js, session_id, EVENTS)

    def line() -> tuple[float, float]:
        parked = gw.metric("agentcast_gateway_connections_parked")
        return gw.metric("agentcast_gateway_replays_waiting"), parked

    async with (
        _slot_held(gw, js, session_id) as holder,
        httpx.AsyncClient(base_url=gw.url, timeout=GUARD_S) as client,
    ):
        # The line first (a request is parked once the line is long when it arrives).
        queued = _replays(client, session_id, PARK_AT)
        await _until(lambda: line() == (PARK_AT, 0), "line full")
        queued += _replays(client, session_id, QUEUE - PARK_AT)
        await _until(lambda: line() == (PARK_AT, QUEUE - PARK_AT), "lot full")
        # While replays are parked: probes, the API and live-only streams go on at once.
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/v1/sessions", headers=auth())).status_code == 200
        async with client.stream(
            "GET", f"/v1/sessions/{session_id}/events", params={"from": "now"}, headers=auth()
        ) as live:
            assert live.status_code == 200
        # Parked replays count towards the queue bound: one more is told to retry later.
        refused = await replay(client, session_id, EVENTS, headers=auth())
        assert line() == (PARK_AT, QUEUE - PARK_AT)
        holder.close()
        done = await asyncio.gather(*queued)

    assert any(c.startswith("replays busy") for c in refused.comments), refused.comments
    for seen in done:
        assert seen.seqs == list(range(1, EVENTS + 1))  # every event, once, in order
        assert not any("restarting" in c for c in seen.comments)
    assert gw.metric("agentcast_gateway_replays_parked_total") >= QUEUE - PARK_AT
    assert gw.metric("agentcast_gateway_connections_parked") == 0


async def test_parked_replays_are_told_the_truth_when_the_gateway_stops(
    parking_gateway: GatewayProcess, js: JetStreamContext, session_id: str
) -> None:
    gw = parking_gateway
    await publish_session(js, session_id, EVENTS)
    async with (
        _slot_held(gw, js, session_id),
        httpx.AsyncClient(base_url=gw.url, timeout=GUARD_S) as client,
    ):
        queued = _replays(client, session_id, PARK_AT)
        await _until(lambda: gw.metric("agentcast_gateway_replays_waiting") == PARK_AT, "line")
        queued += _replays(client, session_id, 6)
        await _until(lambda: gw.metric("agentcast_gateway_connections_parked") == 6, "parked")
        gw.terminate()
        done = await asyncio.gather(*queued)
    # Every client, parked or in line, gets an answer that ends: the truth and a retry hint.
    for seen in done:
        assert seen.ended and any("gateway restarting" in c for c in seen.comments), seen
        assert seen.retries
