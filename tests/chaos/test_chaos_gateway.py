"""kill -9 of a gateway under hundreds of SSE and WebSocket clients over many sessions.

Two gateways on one bus; the clients are spread over both. One is killed
while the synthetic producer publishes, and restarted on its port: its clients
resume with their cursors, on the restarted gateway or on the other one
(each reconnect tries the next). Each client's union must be its sessions'
full sequences exactly once, in order.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.chaos import Producer, Stoppable, counts, gateway, settle, stored_events
from tests.support.chaos_clients import Goal, SseFollower, WsFollower, follow_all, http_client
from tests.support.gateway import token
from tests.support.nats import PrivateNats
from tests.support.roles import unique_name

pytestmark = pytest.mark.timeout(240)

_SESSIONS = 24
_SSE_PER_SESSION = 8
_WS_CLIENTS = 48
_WS_SESSIONS_EACH = 4


async def test_gateway_kill_9_under_hundreds_of_clients_every_client_resumes_exactly_once(
    private_nats: PrivateNats, tmp_path: Path, procs: list[Stoppable]
) -> None:
    bus = private_nats.server
    a, b = gateway(bus, tmp_path, "gw-a"), gateway(bus, tmp_path, "gw-b")
    procs += [a, b]
    await asyncio.gather(asyncio.to_thread(a.start), asyncio.to_thread(b.start))
    live = [a.url, b.url]
    prefix = unique_name("gk").replace("-", "")
    sessions = [f"{prefix}_{i}" for i in range(_SESSIONS)]
    goal = Goal()
    async with http_client() as http:
        followers: list[SseFollower | WsFollower] = []
        for i, session in enumerate(sessions):
            for k in range(_SSE_PER_SESSION):
                name = f"sse-{i}-{k}"
                followers.append(SseFollower(http, lambda: live, session, token(), name, i + k))
        for w in range(_WS_CLIENTS):
            mine = [sessions[(w + j) % _SESSIONS] for j in range(_WS_SESSIONS_EACH)]
            followers.append(WsFollower(lambda: live, mine, token(), f"ws-{w}", w))
        clients = asyncio.ensure_future(follow_all(followers, goal))
        try:
            async with asyncio.timeout(60):
                await asyncio.gather(*(f.connected.wait() for f in followers))
            producer = Producer(bus, tmp_path, prefix, sessions=_SESSIONS, rate=6, seconds=10)
            await producer.start()
            await asyncio.sleep(4)  # mid-run: every session has streamed, none has finished
            on_a = sum(f.at == a.url for f in followers)
            a.kill()
            live[:] = [b.url]  # a new client would be sent to b meanwhile
            await asyncio.sleep(1)
            await asyncio.to_thread(a.start)  # back on its port; clients come back to it too
            live[:] = [a.url, b.url]
            report = await producer.wait()
            events = await stored_events(private_nats.nc.jetstream(), prefix)
            sent = counts(events)
            assert sum(sent.values()) == report["events"], "the stream holds what was acked"
            goal.sent = sent
            async with asyncio.timeout(150):
                tallies = await clients
        finally:
            clients.cancel()
    assert sum(t.reconnects > 0 for t in tallies) >= on_a
    settle(
        "gateway kill -9", sent, tallies,
        sse_clients=_SESSIONS * _SSE_PER_SESSION, ws_clients=_WS_CLIENTS,
        clients_on_killed_gateway=on_a,
    )  # fmt: skip
