"""Replay on a replicated stream: whichever replica answers, a replay misses nothing.

Every replica answers direct gets, and a follower may be behind the leader
(gateway/replay.py reads at least up to a floor for that). The floor costs
one stream-info request per burst of replays, not one per replay.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from nats.aio.client import Client

from agentcast.bus import connect, disconnect, ensure_streams
from agentcast.cluster import ClusterNode, EmbeddedCluster
from agentcast.settings import Settings
from agentcast.subjects import EVENTS_STREAM, event_subject
from gateway.replay import DirectReader
from tests.support.gateway import GatewayProcess, envelopes, read_sse

pytestmark = pytest.mark.timeout(180)

_EVENTS = 3000


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(tmp_path / "cluster") as started:
        yield started


def _settings(url: str, user: str, password: str, tmp: Path) -> Settings:
    return Settings.load(
        {"nats_url": url, "data_dir": str(tmp), "nats_user": user, "nats_password": password,
         "replicas": 3},
        environ={},
    )  # fmt: skip


@pytest.fixture
async def leader_client(cluster: EmbeddedCluster, tmp_path: Path) -> AsyncIterator[Client]:
    """An admin connection to the events stream's leader (created here with 3 replicas)."""
    any_node = await connect(
        _settings(cluster.url, "admin", cluster.credentials["admin"], tmp_path), "test-setup"
    )
    try:
        await ensure_streams(any_node.jetstream(), _settings(cluster.url, "admin", "", tmp_path))
        info = await any_node.jetstream().stream_info(EVENTS_STREAM)
        assert info.cluster is not None and info.cluster.leader
        leader = next(n for n in cluster.nodes if n.name == info.cluster.leader)
    finally:
        await disconnect(any_node)
    nc = await connect(
        _settings(leader.url, "admin", cluster.credentials["admin"], tmp_path), "test-leader"
    )
    try:
        yield nc
    finally:
        await disconnect(nc)


async def _follower(cluster: EmbeddedCluster, nc: Client) -> ClusterNode:
    info = await nc.jetstream().stream_info(EVENTS_STREAM)
    assert info.cluster is not None
    return next(n for n in cluster.nodes if n.name != info.cluster.leader)


def _event(session: str, seq: int) -> bytes:
    return json.dumps(
        {"v": 1, "id": f"{session}.{seq}", "session": session, "run": 1, "seq": seq,
         "ts": 1, "type": "status", "parent_tool_use_id": None, "data": {"status": "x"}}
    ).encode()  # fmt: skip


async def test_a_replay_through_a_lagging_follower_misses_nothing(
    cluster: EmbeddedCluster, leader_client: Client, tmp_path: Path
) -> None:
    follower = await _follower(cluster, leader_client)
    gateway = GatewayProcess(
        follower.url, tmp_path / "gw",
        env={"AGENTCAST_NATS_USER": "gateway", "AGENTCAST_REPLICAS": "3",
             "AGENTCAST_NATS_PASSWORD": cluster.credentials["gateway"]},
    )  # fmt: skip
    await asyncio.to_thread(gateway.start)
    session = "lag_" + uuid.uuid4().hex[:8]
    js = leader_client.jetstream()
    try:
        assert follower.pid is not None
        os.kill(follower.pid, signal.SIGSTOP)
        try:
            # Stored by the leader and the other follower (a quorum) while this one sleeps.
            acks = [
                js.publish(event_subject(session, "status"), _event(session, seq), timeout=10)
                for seq in range(1, _EVENTS + 1)
            ]
            await asyncio.gather(*acks)
        finally:
            os.kill(follower.pid, signal.SIGCONT)
        # At once, before the follower has caught up: a late joiner replays from the start.
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
            frames = await read_sse(http, f"/v1/sessions/{session}/events", _EVENTS, timeout=60)
        assert [e["seq"] for e in envelopes(frames)] == list(range(1, _EVENTS + 1))
    finally:
        gateway.stop()


async def test_a_burst_of_replays_shares_one_request_for_the_floor(
    cluster: EmbeddedCluster, leader_client: Client, tmp_path: Path
) -> None:
    gateway_nc = await connect(
        _settings(cluster.url, "gateway", cluster.credentials["gateway"], tmp_path), "test-gw"
    )
    reader = DirectReader(gateway_nc, EVENTS_STREAM)
    try:
        await reader.start()
        assert reader.replicated
        session = "burst_" + uuid.uuid4().hex[:8]
        js = leader_client.jetstream()
        ack = await js.publish(event_subject(session, "status"), _event(session, 1))
        before = (await js.account_info()).api.total
        floors = await asyncio.gather(*(reader.sync() for _ in range(500)))
        requests = (await js.account_info()).api.total - before - 1  # -1: the account info
        assert set(floors) == {ack.seq}, "every replay reads at least up to the stored event"
        # The account's API count is gathered from every node, so it may also take in a few
        # earlier requests late: one request per replay would be 500.
        assert requests < 25, f"{requests} JetStream API requests for 500 replays"
        batch = await reader.batch(1, event_subject(session, "status"), 10, 1 << 20)
        assert len(batch.frames) == 1 and batch.pending == 0
    finally:
        await reader.stop()
        await disconnect(gateway_nc)
