"""The contract's NATS side: embedded server, idempotent stream setup."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from agentcast.bus import connect, ensure_streams
from agentcast.embedded import EmbeddedNats, NatsServerError
from agentcast.settings import Settings
from agentcast.subjects import EVENTS_STREAM, RUNS_STREAM, SESSIONS_BUCKET, event_subject


async def test_streams_have_the_spec_limits(js: JetStreamContext, settings: Settings) -> None:
    events = await js.stream_info(EVENTS_STREAM)
    assert events.config.subjects == ["agentcast.evt.>"]
    assert events.config.max_msg_size == settings.max_msg_size == 1024 * 1024
    assert events.config.max_age == pytest.approx(7 * 24 * 3600)
    assert events.config.duplicate_window and events.config.duplicate_window > 0
    runs = await js.stream_info(RUNS_STREAM)
    assert runs.config.retention == "workqueue"
    kv = await js.key_value(SESSIONS_BUCKET)
    assert (await kv.status()).bucket == SESSIONS_BUCKET


async def test_setup_is_idempotent(js: JetStreamContext, settings: Settings) -> None:
    await ensure_streams(js, settings)
    await ensure_streams(js, settings)
    assert (await js.stream_info(EVENTS_STREAM)).config.name == EVENTS_STREAM


async def test_duplicate_msg_id_is_stored_once(js: JetStreamContext, session_id: str) -> None:
    subject = event_subject(session_id, "status")
    first = await js.publish(subject, b"{}", headers={"Nats-Msg-Id": f"{session_id}-1"})
    again = await js.publish(subject, b"{}", headers={"Nats-Msg-Id": f"{session_id}-1"})
    assert again.duplicate and again.seq == first.seq


def test_embedded_server_on_a_busy_port_says_which(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    with pytest.raises(NatsServerError, match=str(nats_server.port)):
        EmbeddedNats(tmp_path, port=nats_server.port).start()


async def test_embedded_server_restarts_on_the_same_store(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "store")
    await server.start_async()
    try:
        settings = Settings.load({"nats_url": server.admin_url}, environ={})
        nc = await connect(settings, "test")
        js = nc.jetstream()
        await ensure_streams(js, settings)
        await js.publish(event_subject("keep", "status"), b"{}")
        await nc.close()
        server.kill()
        await server.start_async()
        nc = await connect(settings, "test")
        info = await nc.jetstream().stream_info(EVENTS_STREAM)
        assert info.state.messages == 1
        await nc.close()
    finally:
        server.stop()
    assert server.process is not None and server.process.poll() is not None


async def test_a_store_of_the_open_server_of_old_keeps_its_events(tmp_path: Path) -> None:
    """A data dir from before authentication: its streams move into the AGENTCAST account."""
    from agentcast.embedded import find_nats_server, free_port

    store, port = tmp_path / "store", free_port()
    old = await asyncio.create_subprocess_exec(
        find_nats_server(), "--jetstream", "--store_dir", str(store), "-a", "127.0.0.1",
        "-p", str(port), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        open_settings = Settings.load({"nats_url": f"nats://127.0.0.1:{port}"}, environ={})
        for _ in range(200):  # bounded: until the old server accepts clients
            if _accepts(port):
                break
            await asyncio.sleep(0.05)
        nc = await connect(open_settings, "old")
        await ensure_streams(nc.jetstream(), open_settings)
        await nc.jetstream().publish(event_subject("old", "status"), b"{}")
        await nc.close()
    finally:
        old.terminate()
        await asyncio.wait_for(old.wait(), 10)
    server = EmbeddedNats(store)
    await server.start_async()
    try:
        settings = Settings.load({"nats_url": server.admin_url}, environ={})
        nc = await connect(settings, "test")
        assert (await nc.jetstream().stream_info(EVENTS_STREAM)).state.messages == 1
        await nc.close()
    finally:
        server.stop()


def _accepts(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
