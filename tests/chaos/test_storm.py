"""Chaos: the reconnect storm after a gateway restart (issue 10's "reconnect storm" row).

Clients follow a live session; the gateway is restarted (SIGTERM: each client
is told to reconnect) while events keep coming; every client reconnects at
once with its Last-Event-ID to the new gateway, which admits a few replays at
a time. Each client's union of both streams must be the session's whole
sequence, exactly once, in order.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from nats.js import JetStreamContext

from agentcast.embedded import EmbeddedNats
from agentcast.events import TextDeltaData
from tests.support.events import build_events, publish_events
from tests.support.gateway import GatewayProcess, auth
from tests.support.nats import role_env
from tests.support.storm import Replay, replay

CLIENTS = 60
BEFORE = 100
AFTER = 150
GUARD_S = 90.0


async def _publish(js: JetStreamContext, session: str, first: int, count: int) -> None:
    datas = [TextDeltaData(index=0, text=f"{first + i:06d}") for i in range(count)]
    await publish_events(js, build_events(session, datas, first_seq=first))


async def test_every_client_resumes_exactly_once_after_a_gateway_restart(
    nats_server: EmbeddedNats, js: JetStreamContext, tmp_path: Path, session_id: str
) -> None:
    env = {**role_env(nats_server, "gateway"), "AGENTCAST_REPLAY_CONCURRENCY": "4"}
    gw = GatewayProcess(nats_server.url, tmp_path / "gw", env=env)
    gw.start()
    total = BEFORE + AFTER
    seen = [Replay() for _ in range(CLIENTS)]
    try:
        await _publish(js, session_id, 1, BEFORE // 2)
        async with httpx.AsyncClient(base_url=gw.url, timeout=GUARD_S) as client:
            first = [
                asyncio.create_task(replay(client, session_id, total, headers=auth(), seen=s))
                for s in seen
            ]
            await _publish(js, session_id, BEFORE // 2 + 1, BEFORE - BEFORE // 2)  # live
            deadline = time.monotonic() + GUARD_S
            while not all(s.seqs and s.seqs[-1] == BEFORE for s in seen):
                assert time.monotonic() < deadline, "hang guard: first streams"
                await asyncio.sleep(0.05)
            gw.stop()  # SIGTERM: every stream is told to reconnect, then ends
            await asyncio.gather(*first)
            await _publish(js, session_id, BEFORE + 1, AFTER // 2)  # while it is down
            gw.start()
            storm = [
                asyncio.create_task(replay(client, session_id, total, headers=auth(), seen=s))
                for s in seen
            ]
            await _publish(js, session_id, BEFORE + AFTER // 2 + 1, AFTER - AFTER // 2)
            await asyncio.gather(*storm)
        queued = gw.metric("agentcast_gateway_replays_queued_total")
    finally:
        gw.stop()
    for s in seen:
        assert s.seqs == list(range(1, total + 1))  # nothing lost, nothing twice
        assert any("gateway restarting" in c for c in s.comments)  # the restart, truthfully
    assert queued > 0  # the reconnects came as a storm: some had to wait their turn
