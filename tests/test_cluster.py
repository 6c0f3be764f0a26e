"""A 3-node cluster from deploy/nats on loopback: replicas 3, a full run, a lost node, failover."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.api import ConsumerConfig, DeliverPolicy

from agentcast.bus import connect, disconnect, ensure_streams
from agentcast.bus_auth import ROLES, password_env, render_accounts
from agentcast.cluster import DEPLOY_NATS, EmbeddedCluster
from agentcast.embedded import find_nats_server, free_port
from agentcast.settings import Settings
from agentcast.subjects import EVENTS_STREAM, RUNS_STREAM, SESSIONS_BUCKET, event_subject
from tests.support.gateway import GatewayProcess, read_sse
from tests.support.roles import Role
from tests.support.scripted import ScriptedModel
from tests.support.worker import follow, running_worker, submit, worker_settings

pytestmark = pytest.mark.timeout(180)

DEPLOY = DEPLOY_NATS.parent


def _violations(cluster: EmbeddedCluster) -> list[str]:
    lines: list[str] = []
    for node in cluster.nodes:
        lines += [ln for ln in node.log_path.read_text().splitlines() if "Violation" in ln]
    return lines


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(tmp_path / "cluster") as started:
        yield started


def as_role(cluster: EmbeddedCluster, role: str, tmp: Path, **changes: object) -> Settings:
    """A role's settings on the cluster: the three URLs, its own user, replicas 3."""
    base = Settings.load(
        {"nats_url": cluster.url, "data_dir": str(tmp / "data"), "jwt_secret": "test-secret"},
        environ={},
    )
    changes = {"replicas": 3, **changes}
    return base.replace(nats_user=role, nats_password=cluster.credentials[role], **changes)


@pytest.fixture
async def admin(cluster: EmbeddedCluster, tmp_path: Path) -> AsyncIterator[Client]:
    settings = as_role(cluster, "admin", tmp_path)
    nc = await connect(settings, "test-admin")
    await ensure_streams(nc.jetstream(), settings)
    try:
        yield nc
    finally:
        await disconnect(nc)


@pytest.fixture(scope="module")
async def model() -> AsyncIterator[ScriptedModel]:
    async with ScriptedModel(speed=0) as scripted:
        yield scripted


def test_the_committed_accounts_file_is_the_rendered_one() -> None:
    assert (DEPLOY_NATS / "accounts.conf").read_text() == render_accounts(), (
        "regenerate it: python -m agentcast.bus_auth > deploy/nats/accounts.conf"
    )


@pytest.mark.parametrize(
    "config", ["nats/node-1.conf", "nats/node-2.conf", "nats/node-3.conf", "nats-server.conf"]
)
def test_every_deployed_config_passes_nats_server_t(config: str, tmp_path: Path) -> None:
    env = {password_env(role): "p" + uuid.uuid4().hex for role in ROLES}
    env |= {
        "AGENTCAST_NATS_HOST": "0.0.0.0",
        "AGENTCAST_NATS_PORT": "4222",
        "AGENTCAST_NATS_CLUSTER_PORT": "6222",
        "AGENTCAST_NATS_MONITOR_PORT": "8222",
        "AGENTCAST_NATS_STORE_DIR": str(tmp_path),
        "AGENTCAST_ROUTE_PASSWORD": "routepw",
    }
    env |= {
        f"AGENTCAST_NATS_ROUTE_{i}": f"nats-route://route:routepw@nats-{i}:6222" for i in (1, 2, 3)
    }
    done = subprocess.run(
        [find_nats_server(), "-t", "-c", str(DEPLOY / config)],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # Without its variables a config does not silently start open: it refuses to load.
    bare = subprocess.run(
        [find_nats_server(), "-t", "-c", str(DEPLOY / config)],
        capture_output=True, text=True, timeout=30, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("AGENTCAST_")},
    )  # fmt: skip
    assert bare.returncode != 0


async def test_streams_and_buckets_have_three_replicas_and_a_run_goes_through(
    cluster: EmbeddedCluster, admin: Client, model: ScriptedModel, tmp_path: Path
) -> None:
    js = admin.jetstream()
    for stream in (EVENTS_STREAM, RUNS_STREAM, f"KV_{SESSIONS_BUCKET}"):
        info = await js.stream_info(stream)
        assert info.config.num_replicas == 3, stream
        assert info.cluster is not None and len(info.cluster.replicas or []) == 2, stream

    session = "c_" + uuid.uuid4().hex[:10]
    worker = as_role(cluster, "worker", tmp_path)
    worker_nc = await connect(worker, "agentcast-worker")
    gateway = GatewayProcess(
        cluster.url, tmp_path / "gw", env={"AGENTCAST_NATS_USER": "gateway",
        "AGENTCAST_NATS_PASSWORD": cluster.credentials["gateway"], "AGENTCAST_REPLICAS": "3"},
    )  # fmt: skip
    try:
        await asyncio.to_thread(gateway.start)
        async with running_worker(worker_nc, worker_settings(worker, tmp_path, model.url)):
            await submit(js, session, "[scenario:bash] say hello from the shell")
            events = await follow(js, session)
        assert events[-1].type == "run.completed"
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
            frames = await read_sse(http, f"/v1/sessions/{session}/events", len(events))
        assert [f.event for f in frames] == [e.type for e in events]
    finally:
        gateway.stop()
        await disconnect(worker_nc)
    assert _violations(cluster) == []


async def _publish(js: object, subject: str, body: bytes, msg_id: str) -> None:
    """Publish until JetStream acks it; the message id makes a retry never store it twice."""
    from nats.js import JetStreamContext

    assert isinstance(js, JetStreamContext)
    for _ in range(300):  # bounded: a leader election takes a few seconds at most
        try:
            await js.publish(subject, body, headers={"Nats-Msg-Id": msg_id}, timeout=2)
            return
        except (TimeoutError, NatsError, OSError):
            await asyncio.sleep(0.1)
    raise AssertionError(f"{msg_id} never acknowledged")


async def test_a_node_killed_loses_nothing_and_its_clients_fail_over(
    cluster: EmbeddedCluster, admin: Client, tmp_path: Path
) -> None:
    session = "k_" + uuid.uuid4().hex[:10]
    subject = event_subject(session, "status")
    publisher = await connect(as_role(cluster, "worker", tmp_path), "test-publisher")
    reader = await admin.jetstream().subscribe(
        f"agentcast.evt.{session}.>",
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        stream=EVENTS_STREAM,
    )
    total, killed = 400, None
    try:
        js = publisher.jetstream()
        for i in range(total):
            if i == total // 4:
                # kill -9 the node this publisher is connected to.
                port = urlsplit(str(publisher.connected_url.geturl())).port  # type: ignore[union-attr]
                killed = next(node for node in cluster.nodes if node.port == port)
                killed.kill()
            await _publish(js, subject, json.dumps({"i": i}).encode(), f"{session}-{i}")
        seen: list[int] = []
        async with asyncio.timeout(60):
            while len(seen) < total:
                msg = await reader.next_msg(timeout=30)
                seen.append(json.loads(msg.data)["i"])
        assert seen == list(range(total)), "every event once, in order"
        assert killed is not None
        assert urlsplit(str(publisher.connected_url.geturl())).port != killed.port  # type: ignore[union-attr]
        info = await admin.jetstream().stream_info(EVENTS_STREAM)
        assert info.cluster is not None and info.cluster.leader != killed.name
    finally:
        await reader.unsubscribe()
        await disconnect(publisher)


async def test_roles_report_streams_with_fewer_replicas_and_admin_raises_them(
    cluster: EmbeddedCluster, tmp_path: Path
) -> None:
    one = as_role(cluster, "admin", tmp_path, replicas=1)
    nc = await connect(one, "test-admin")
    try:
        await ensure_streams(nc.jetstream(), one)  # a stream from a one-node past
        creds = {"AGENTCAST_REPLICAS": "3", "AGENTCAST_NATS_PASSWORD": ""}
        gateway = GatewayProcess(cluster.url, tmp_path / "gw", env=creds | {
            "AGENTCAST_NATS_USER": "gateway", "AGENTCAST_NATS_PASSWORD": cluster.credentials["gateway"]})  # fmt: skip
        port = free_port()
        metrics = Role(
            "metrics",
            ["--nats", cluster.url, "--data", str(tmp_path / "m"), "--metrics-port", str(port)],
            creds | {"AGENTCAST_NATS_USER": "metrics",
                     "AGENTCAST_NATS_PASSWORD": cluster.credentials["metrics"]},
            tmp_path / "metrics.log",
            "Metrics ready",
        )  # fmt: skip
        try:
            await asyncio.to_thread(gateway.start)
            await asyncio.to_thread(metrics.start)
            wanted = "stream AGENTCAST_EVENTS has 1 replica(s), fewer than the 3 wanted"
            assert wanted in gateway.log.read_text() and wanted in metrics.output()
            assert gateway.metric("agentcast_stream_replicas", stream=EVENTS_STREAM) == 1
            assert gateway.metric("agentcast_stream_replicas_wanted", stream=EVENTS_STREAM) == 3
            async with httpx.AsyncClient(timeout=5) as http:
                scrape = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            assert f'agentcast_stream_replicas{{stream="{EVENTS_STREAM}"}} 1.0' in scrape
        finally:
            gateway.stop()
            metrics.stop()
        three = one.replace(replicas=3)
        await ensure_streams(nc.jetstream(), three)
        for stream in (EVENTS_STREAM, RUNS_STREAM):
            assert (await nc.jetstream().stream_info(stream)).config.num_replicas == 3
    finally:
        await disconnect(nc)
    assert _violations(cluster) == []
