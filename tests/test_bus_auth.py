"""The closed bus on a real nats-server: who may do what (agentcast/bus_auth.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy, StreamConfig

from agentcast import replicas
from agentcast.bus import connect, credentials, disconnect, ensure_streams, servers
from agentcast.bus_auth import ROLES
from agentcast.embedded import EmbeddedNats
from agentcast.settings import Settings
from agentcast.subjects import EVENTS_STREAM, RUNS_STREAM, event_subject
from tests.support.events import build_events, publish_events, simple_run
from tests.support.nats import role_env, role_settings
from tests.support.roles import Role, wait_until

pytestmark = pytest.mark.timeout(60)


class User:
    """A connection as one user, and the permission errors the server sent it."""

    def __init__(self, nc: Client, errors: list[str]) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=1.0)
        self.errors = errors

    async def refused(self, subject: str) -> bool:
        """Whether the server refused this connection something on `subject` (bounded wait)."""
        await self.nc.flush()
        for _ in range(100):
            wanted = f'"{subject}"'.lower()  # nats-py lower-cases the server's message
            if any(
                "permissions violation" in e.lower() and wanted in e.lower() for e in self.errors
            ):
                return True
            await asyncio.sleep(0.02)
        return False


@asynccontextmanager
async def as_role(server: EmbeddedNats, settings: Settings, role: str) -> AsyncIterator[User]:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await connect(role_settings(settings, server, role), f"test-{role}", on_error=on_error)
    try:
        yield User(nc, errors)
    finally:
        await disconnect(nc)


async def test_a_connection_without_or_with_wrong_credentials_is_refused(
    nats_server: EmbeddedNats,
) -> None:
    for url in (nats_server.url, nats_server.url.replace("nats://", "nats://admin:wrong@")):
        with pytest.raises(Exception, match="(?i)authorization"):
            await nats.connect(servers=[url], allow_reconnect=False, connect_timeout=2)


async def test_the_gateway_cannot_publish_events_or_live_messages_or_delete_a_stream(
    nats_server: EmbeddedNats, settings: Settings, nc: Client, session_id: str
) -> None:
    async with as_role(nats_server, settings, "gateway") as gw:
        evt = event_subject(session_id, "run.completed")
        await gw.nc.publish(evt, b"{}")
        assert await gw.refused(evt)
        with pytest.raises(TimeoutError):  # refused: no answer ever comes
            await gw.js.publish(evt, b"{}")
        live = f"agentcast.live.{session_id}.text.delta"
        await gw.nc.publish(live, b"{}")
        assert await gw.refused(live)
        for stream in (EVENTS_STREAM, RUNS_STREAM):
            with pytest.raises(TimeoutError):
                await gw.js.delete_stream(stream)
            assert await gw.refused(f"$JS.API.STREAM.DELETE.{stream}"), gw.errors
            with pytest.raises(TimeoutError):
                await gw.js.purge_stream(stream)
            with pytest.raises(TimeoutError):
                await gw.js.update_stream(StreamConfig(name=stream, subjects=["x.>"]))
        # Nor may it read another role's replies.
        await gw.nc.subscribe("_INBOX_worker.>")
        assert await gw.refused("_INBOX_worker.>")
    assert (await nc.jetstream().stream_info(EVENTS_STREAM)).config.subjects == ["agentcast.evt.>"]


@pytest.mark.parametrize("durable", ["agentcast-archiver", "agentcast-metrics"])
async def test_a_worker_cannot_read_or_touch_the_consumers_durables(
    nats_server: EmbeddedNats, settings: Settings, nc: Client, durable: str
) -> None:
    js = nc.jetstream()
    await js.add_consumer(
        EVENTS_STREAM, ConsumerConfig(durable_name=durable, deliver_policy=DeliverPolicy.NEW)
    )
    try:
        async with as_role(nats_server, settings, "worker") as worker:
            with pytest.raises(TimeoutError):
                await worker.js.consumer_info(EVENTS_STREAM, durable)
            next_msg = f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.{durable}"
            await worker.nc.publish(next_msg, b'{"batch":1}', reply=worker.nc.new_inbox())
            assert await worker.refused(next_msg)
            with pytest.raises(TimeoutError):
                await worker.js.delete_consumer(EVENTS_STREAM, durable)
            ack = f"$JS.ACK.{EVENTS_STREAM}.{durable}.1.1.1.0.0"
            await worker.nc.publish(ack, b"+ACK")
            assert await worker.refused(ack)
        async with as_role(nats_server, settings, "gateway") as gw:
            with pytest.raises(TimeoutError):
                await gw.js.consumer_info(EVENTS_STREAM, durable)
        assert (await js.consumer_info(EVENTS_STREAM, durable)).name == durable
    finally:
        await js.delete_consumer(EVENTS_STREAM, durable)


async def test_the_metrics_and_archiver_users_cannot_publish_events(
    nats_server: EmbeddedNats, settings: Settings, session_id: str
) -> None:
    for role in ("metrics", "archiver"):
        async with as_role(nats_server, settings, role) as user:
            evt = event_subject(session_id, "text.delta")
            await user.nc.publish(evt, b"{}")
            assert await user.refused(evt), role


async def test_nobody_publishes_on_live_subjects_not_even_admin(
    nats_server: EmbeddedNats, settings: Settings, session_id: str
) -> None:
    live = f"agentcast.live.{session_id}.text.delta"
    async with as_role(nats_server, settings, "gateway") as viewer:
        heard: list[bytes] = []

        async def on_msg(msg: nats.aio.msg.Msg) -> None:
            heard.append(msg.data)

        await viewer.nc.subscribe(f"agentcast.live.{session_id}.>", cb=on_msg)
        await viewer.nc.flush()
        for role in ROLES:
            async with as_role(nats_server, settings, role) as user:
                await user.nc.publish(live, b"forged", headers={"Nats-Sequence": "999999999"})
                assert await user.refused(live), role
        await viewer.nc.flush()
        assert heard == []


async def test_each_role_replies_only_to_its_own_inbox(
    nats_server: EmbeddedNats, settings: Settings
) -> None:
    for role in ROLES:
        async with as_role(nats_server, settings, role) as user:
            assert user.nc.new_inbox().startswith(f"_INBOX_{role}.")
            await user.js.stream_info(EVENTS_STREAM)  # a request: its answer reaches the inbox


def test_servers_and_credentials_from_the_url_list_or_the_settings() -> None:
    s = Settings.load({"nats_url": "nats://u:p%40ss@a:4222, nats://b:4223"}, environ={})
    assert servers(s) == ["nats://a:4222", "nats://b:4223"]
    assert credentials(s) == ("u", "p@ss")
    own = s.replace(nats_user="worker", nats_password="w")
    assert credentials(own) == ("worker", "w")  # the role's own user wins over the URL's
    env = {"AGENTCAST_NATS_URL": "nats://a,nats://b", "AGENTCAST_REPLICAS": "3"}
    loaded = Settings.load(environ=env | {"AGENTCAST_NATS_USER": "gateway"})
    assert loaded.replicas == 3 and credentials(loaded) == ("gateway", "")


async def test_a_role_warns_about_a_stream_it_may_not_bring_to_its_settings(
    nats_server: EmbeddedNats, settings: Settings, nc: Client, caplog: pytest.LogCaptureFixture
) -> None:
    before = await nc.jetstream().stream_info(EVENTS_STREAM)
    wants_more = role_settings(settings, nats_server, "gateway").replace(
        replicas=3, events_max_age_s=60.0
    )
    gw = await connect(wants_more, "test-gateway")
    try:
        with caplog.at_level(logging.WARNING, logger="agentcast"):
            await ensure_streams(gw.jetstream(), wants_more)
    finally:
        await disconnect(gw)
    text = caplog.text
    assert "stream AGENTCAST_EVENTS differs" in text and "only admin updates" in text
    assert "stream AGENTCAST_EVENTS has 1 replica(s), fewer than the 3 wanted" in text
    assert replicas.found()[EVENTS_STREAM] == (1, 3)
    after = await nc.jetstream().stream_info(EVENTS_STREAM)
    assert after.config.max_age == before.config.max_age  # left as is


async def test_admin_with_the_same_settings_updates_nothing(
    settings: Settings, nc: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="agentcast"):
        await ensure_streams(nc.jetstream(), settings)
    assert "Updated stream" not in caplog.text and "differs" not in caplog.text


@pytest.mark.parametrize("role", ["gateway", "worker", "archiver", "metrics"])
async def test_each_role_alone_on_an_empty_server_creates_what_it_needs(
    tmp_path: Path, role: str
) -> None:
    server = EmbeddedNats(tmp_path / "nats")
    await server.start_async()
    try:
        own = Settings.load({"nats_url": server.url}, environ={}).replace(
            nats_user=role, nats_password=server.credentials[role]
        )
        conn = await connect(own, role)
        try:
            await ensure_streams(conn.jetstream(), own)
            for stream in (EVENTS_STREAM, RUNS_STREAM):
                await conn.jetstream().stream_info(stream)
        finally:
            await disconnect(conn)
    finally:
        server.stop()
    violations = [ln for ln in server.log_path.read_text().splitlines() if "Violation" in ln]
    assert violations == []


async def test_a_partitioned_archiver_with_its_own_user_archives_without_violations(
    tmp_path: Path,
) -> None:
    server = EmbeddedNats(tmp_path / "nats")
    await server.start_async()
    base = Settings.load({"nats_url": server.url}, environ={})
    archivers = [
        Role(
            "archiver",
            [
                *("--nats", server.url, "--data", str(tmp_path / "data")),
                *("--dir", str(tmp_path / "a"), "--partitions", "2", "--partition", str(i)),
            ],
            {**role_env(server, "archiver"), "AGENTCAST_SEAL_IDLE_S": "600"},
            tmp_path / f"archiver-{i}.log",
            "Archiver ready",
        )
        for i in (0, 1)
    ]
    worker = base.replace(nats_user="worker", nats_password=server.credentials["worker"])
    try:
        for archiver in archivers:
            await asyncio.to_thread(archiver.start)
        nc = await connect(worker, "test-worker")
        try:
            sessions = [f"part_{i}" for i in range(6)]
            for session in sessions:
                await publish_events(nc.jetstream(), build_events(session, simple_run(3)))
        finally:
            await disconnect(nc)
        await wait_until(
            lambda: len(list((tmp_path / "a").glob("*/*.jsonl"))) == len(sessions),
            60,
            "every session archived by its partition's archiver",
        )
    finally:
        for archiver in archivers:
            archiver.stop()
        server.stop()
    violations = [ln for ln in server.log_path.read_text().splitlines() if "Violation" in ln]
    assert violations == []
