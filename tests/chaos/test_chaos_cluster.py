"""A 3-node cluster from deploy/nats: a node killed mid-run, then the stream's leader killed mid-run.

Every role runs against the cluster with replicas 3: a gateway, the archiver,
the metrics consumer, two workers running the real Claude CLI against the
scripted model, and the synthetic producer. While they run, a follower of
AGENTCAST_EVENTS is killed (kill -9) and restarted, then the stream's leader
is killed and left dead (two of three keep the quorum). The CLI runs
complete; SSE and WebSocket clients and the consumers hold every event
exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from agentcast.bus import connect, disconnect, ensure_streams
from agentcast.cluster import ClusterNode, EmbeddedCluster
from agentcast.events import TERMINAL_TYPES, type_of
from agentcast.settings import Settings
from agentcast.subjects import EVENTS_STREAM
from tests.support.chaos import (
    Stoppable,
    archiver,
    counts,
    gateway,
    metrics,
    settle,
    stored_events,
)
from tests.support.chaos_load import Load, caught_up, under_load
from tests.support.roles import unique_name
from tests.support.scripted import ScriptedModel
from tests.support.worker import follow, submit, worker_role

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(tmp_path / "cluster") as started:
        yield started


def _as(cluster: EmbeddedCluster, role: str, tmp: Path) -> Settings:
    base = Settings.load({"nats_url": cluster.url, "data_dir": str(tmp / "data")}, environ={})
    return base.replace(nats_user=role, nats_password=cluster.credentials[role], replicas=3)


@pytest.fixture
async def admin(cluster: EmbeddedCluster, tmp_path: Path) -> AsyncIterator[Client]:
    settings = _as(cluster, "admin", tmp_path)
    nc = await connect(settings, "test-admin")
    await ensure_streams(nc.jetstream(), settings)
    try:
        yield nc
    finally:
        await disconnect(nc)


@pytest.fixture
async def model() -> AsyncIterator[ScriptedModel]:
    async with ScriptedModel(speed=0.5) as scripted:
        yield scripted


async def _leader(
    admin: Client, cluster: EmbeddedCluster, not_: ClusterNode | None = None
) -> ClusterNode:
    """The events stream's leader (once it is another node than `not_`)."""
    for _ in range(300):  # bounded: an election takes seconds
        try:
            info = await admin.jetstream().stream_info(EVENTS_STREAM)
            name = info.cluster.leader if info.cluster is not None else None
            if name and (not_ is None or name != not_.name):
                return next(n for n in cluster.nodes if n.name == name)
        except (TimeoutError, OSError):
            pass
        await asyncio.sleep(0.2)
    raise AssertionError("the events stream has no (new) leader")


async def test_cluster_node_then_stream_leader_killed_mid_run_nothing_lost(
    cluster: EmbeddedCluster, admin: Client, tmp_path: Path, procs: list[Stoppable],
    model: ScriptedModel,
) -> None:  # fmt: skip
    gw = gateway(cluster, tmp_path, replicas=3)
    workers = [
        worker_role(_as(cluster, "worker", tmp_path), tmp_path, name, model.url, replicas=3)
        for name in ("x", "y")
    ]
    consumers = [archiver(cluster, tmp_path, replicas=3), metrics(cluster, tmp_path, replicas=3)]
    procs += [gw, *consumers, *workers]
    await asyncio.gather(*(asyncio.to_thread(p.start, 60) for p in procs))
    agents = [unique_name("ca") for _ in workers]
    killed: list[str] = []
    kill_times: list[int] = []

    async def faults() -> None:
        js = admin.jetstream()
        for session in agents:  # the real CLI, one agent per worker, through both faults
            await submit(js, session, "[scenario:slow] a long answer please")
        await asyncio.sleep(4)
        leader = await _leader(admin, cluster)
        follower = next(n for n in cluster.nodes if n is not leader)
        follower.kill()
        kill_times.append(time.time_ns())
        killed.append(f"follower {follower.name}")
        await asyncio.sleep(3)
        await asyncio.to_thread(follower.start)
        await asyncio.to_thread(cluster.wait_ready, 60)
        await asyncio.sleep(2)
        leader = await _leader(admin, cluster)
        leader.kill()
        kill_times.append(time.time_ns())
        killed.append(f"leader {leader.name}")
        new = await _leader(admin, cluster, not_=leader)
        killed.append(f"new leader {new.name}")

    outcome = await under_load(
        cluster, admin.jetstream, tmp_path, lambda: [gw.url], faults,
        Load(sessions=8, ws_clients=4, seconds=14), replicas=3,
    )  # fmt: skip
    js = admin.jetstream()
    for session in agents:
        events = await follow(js, session, timeout=180)
        terminals = [e for e in events if e.type in TERMINAL_TYPES]
        assert [e.type for e in terminals] == ["run.completed"], terminals
    everything = await stored_events(js)
    assert all(type_of(everything[s][-1]) == "run.completed" for s in agents), (
        "the CLI runs completed"
    )
    tallies = await caught_up(js, tmp_path / "archiver" / "archive", everything)
    settle(
        "cluster: follower kill -9 + restart, then leader kill -9", counts(everything),
        outcome.clients + tallies, faults=killed, cli_runs_completed=len(agents),
        synthetic_sessions=len(outcome.sent),
    )  # fmt: skip
