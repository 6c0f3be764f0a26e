"""A worker killed (kill -9) mid-run, the real Claude CLI against the scripted model.

Two workers each run a slow agent, two more requests wait in the queue. The
runner of one is killed: its run ends with exactly one `run.failed`
(`worker_lost`) within the bound, the survivor finishes its own run and then
takes the queue. SSE and WebSocket clients follow every session through the
gateway, the archiver and the metrics consumer read along; each holds every
event exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentcast.events import TERMINAL_TYPES, type_of
from tests.support.chaos import Stoppable, archiver, counts, gateway, metrics, settle, stored_events
from tests.support.chaos_clients import Goal, SseFollower, WsFollower, follow_all, http_client
from tests.support.chaos_load import caught_up
from tests.support.gateway import token
from tests.support.nats import PrivateNats
from tests.support.roles import unique_name
from tests.support.scripted import ScriptedModel
from tests.support.worker import follow, processes_in, submit, worker_role
from tests.support.worker_loss import LOST_AFTER_S, SLACK_S, as_worker, no_cli_left, streaming

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
async def model() -> AsyncIterator[ScriptedModel]:
    """Paced so that the slow scenario lasts long enough to be killed in the middle."""
    async with ScriptedModel(speed=0.5) as scripted:
        yield scripted


async def test_worker_kill_9_mid_run_worker_lost_within_the_bound_queue_goes_on(
    private_nats: PrivateNats, tmp_path: Path, procs: list[Stoppable], model: ScriptedModel
) -> None:
    bus, js = private_nats.server, private_nats.nc.jetstream()
    workers = {
        name: worker_role(
            as_worker(private_nats), tmp_path, name, model.url, worker_lost_after_s=LOST_AFTER_S
        )
        for name in ("x", "y")
    }
    gw = gateway(bus, tmp_path)
    procs += [gw, archiver(bus, tmp_path), metrics(bus, tmp_path), *workers.values()]
    await asyncio.gather(*(asyncio.to_thread(p.start) for p in procs))
    prefix = unique_name("cw").replace("-", "")
    lost, busy, queued = f"{prefix}_lost", f"{prefix}_busy", [f"{prefix}_q{i}" for i in (1, 2)]
    sessions = [lost, busy, *queued]
    goal = Goal()
    async with http_client() as http:
        followers: list[SseFollower | WsFollower] = [
            SseFollower(http, lambda: [gw.url], s, token(), f"sse-{s[-4:]}-{k}")
            for s in sessions
            for k in range(3)
        ]
        followers += [WsFollower(lambda: [gw.url], sessions, token(), f"ws-{k}") for k in range(3)]
        clients = asyncio.ensure_future(follow_all(followers, goal))
        try:
            async with asyncio.timeout(60):
                await asyncio.gather(*(f.connected.wait() for f in followers))
            await submit(js, lost, "[scenario:slow] a long answer please")
            await streaming(js, lost)
            await submit(js, busy, "[scenario:slow] another long answer")
            await streaming(js, busy)
            for session in queued:
                await submit(js, session, "[scenario:quick] hi")
            dead = next(n for n in workers if processes_in(tmp_path / n / "workspaces" / lost))
            workers[dead].kill()
            killed_at = time.monotonic()
            await no_cli_left(tmp_path / dead / "workspaces" / lost)
            closing = await follow(js, lost, timeout=LOST_AFTER_S + SLACK_S + 60)
            closed_after = time.monotonic() - killed_at
            for session in (busy, *queued):
                assert (await follow(js, session, timeout=120))[-1].type == "run.completed"
            events = await stored_events(js, prefix)
            goal.sent = counts(events)
            async with asyncio.timeout(120):
                tallies = await clients
        finally:
            clients.cancel()
    terminals = [e for e in events[lost] if type_of(e) in TERMINAL_TYPES]
    assert [(type_of(e), getattr(e.data, "kind", "")) for e in terminals] == [
        ("run.failed", "worker_lost")
    ]
    assert closing[-1].type == "run.failed"
    assert closed_after < LOST_AFTER_S + SLACK_S, f"worker_lost after {closed_after:.1f}s"
    consumers = await caught_up(js, tmp_path / "archiver" / "archive", events)
    survivor = next(n for n in workers if n != dead)
    assert "is lost, closing its run" in workers[survivor].output()
    settle(
        "worker kill -9 (real CLI)", counts(events), tallies + consumers,
        worker_lost_after_s=round(closed_after, 1), bound_s=LOST_AFTER_S,
        queued_completed=len(queued), runs_completed=1 + len(queued),
    )  # fmt: skip
