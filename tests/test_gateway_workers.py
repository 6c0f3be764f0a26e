"""`agentcast gateway --workers N`: several processes serve one port, each subscribing to NATS."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from nats.js import JetStreamContext

from agentcast.embedded import EmbeddedNats
from tests.support.events import build_events, publish_events, simple_run
from tests.support.gateway import GatewayProcess, auth, envelopes, read_sse
from tests.support.nats import role_env


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in (Path("/proc") / str(pid) / "task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


async def test_two_worker_processes_serve_every_client_the_full_sequence(
    nats_server: EmbeddedNats, js: JetStreamContext, tmp_path: Path, session_id: str
) -> None:
    gateway = GatewayProcess(
        nats_server.url,
        tmp_path / "gw",
        None,
        "--workers",
        "2",
        env=role_env(nats_server, "gateway"),
    )
    await asyncio.to_thread(gateway.start)
    try:
        assert len(_children(gateway.pid)) >= 2, "two serving processes"
        events = build_events(session_id, simple_run(n_text=20))
        await publish_events(js, events[:10])
        async with httpx.AsyncClient(base_url=gateway.url, headers=auth(), timeout=30) as http:
            # Connections land on either process (one shared listening socket);
            # each replays what is stored, then follows live, whatever the timing.
            readers = [
                asyncio.create_task(
                    read_sse(http, f"/v1/sessions/{session_id}/events", len(events))
                )
                for _ in range(20)
            ]
            await asyncio.sleep(0.5)
            await publish_events(js, events[10:])
            results = await asyncio.gather(*readers)
        for received in results:
            assert [e["seq"] for e in envelopes(received)] == [e.seq for e in events]
    finally:
        await asyncio.to_thread(gateway.stop)
    assert gateway.proc is not None and gateway.proc.returncode == 0
