"""A single nats-server killed (kill -9) and restarted mid-run: every role reconnects by itself.

The gateway, the archiver, the metrics consumer, a worker and the synthetic
producer stay up through the crash (none is restarted); the SSE and WebSocket
clients resume with their cursors. Afterwards every client, the archive and
the snapshots hold each event exactly once, and a run submitted through the
gateway is taken by the worker and completes (the real CLI, scripted model).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support.chaos import Stoppable, archiver, gateway, metrics, settle
from tests.support.chaos_load import Load, caught_up, under_load
from tests.support.gateway import auth
from tests.support.nats import PrivateNats
from tests.support.roles import Role
from tests.support.scripted import ScriptedModel
from tests.support.worker import follow, worker_role
from tests.support.worker_loss import as_worker

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
async def model() -> AsyncIterator[ScriptedModel]:
    async with ScriptedModel(speed=0) as scripted:
        yield scripted


async def test_nats_server_killed_and_restarted_every_role_reconnects_nothing_lost(
    private_nats: PrivateNats, tmp_path: Path, procs: list[Stoppable], model: ScriptedModel
) -> None:
    bus = private_nats.server
    gw = gateway(bus, tmp_path)
    roles = [archiver(bus, tmp_path), metrics(bus, tmp_path)]
    worker = worker_role(as_worker(private_nats), tmp_path, "worker", model.url)
    procs += [gw, *roles, worker]
    await asyncio.to_thread(gw.start)
    for role in (*roles, worker):
        await asyncio.to_thread(role.start)

    async def crash() -> None:
        await asyncio.sleep(4)
        bus.kill()
        await asyncio.sleep(2)  # down for a while: every role sees its connection fail
        await bus.start_async()

    outcome = await under_load(
        bus, private_nats.nc.jetstream, tmp_path, lambda: [gw.url], crash, Load(seconds=10)
    )
    js = private_nats.nc.jetstream()
    consumers = await caught_up(js, tmp_path / "archiver" / "archive", outcome.events)
    # The worker and the gateway's API came back too: a run goes through.
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
        reply = await http.post(
            "/v1/runs", json={"prompt": "[scenario:quick] hi"}, headers=auth(("run", "read"))
        )
        assert reply.status_code == 202, reply.text
    events = await follow(js, reply.json()["session"], timeout=120)
    assert events[-1].type == "run.completed", events[-1]
    for proc in procs:
        assert proc.proc is not None and proc.proc.poll() is None, (
            f"{proc.cmd if isinstance(proc, Role) else 'gateway'} exited"
        )
    assert all(role.starts == 1 for role in (*roles, worker)), "no role was restarted"
    # The clients' streams stayed open: the gateway refilled what core NATS missed from JetStream.
    refills = await asyncio.to_thread(gw.metric, "agentcast_gateway_gap_refills_total")
    settle(
        "nats-server kill -9 + restart", outcome.sent, outcome.clients + consumers,
        down_s=2, run_after_restart=events[-1].type, gateway_gap_refills=refills,
    )  # fmt: skip
