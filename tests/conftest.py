"""Shared fixtures: one real nats-server per test session, on a free port.

The server is authenticated like the one of `agentcast up` (agentcast/bus_auth.py):
`settings.nats_url` carries the admin user's credentials; tests/support/nats.py
gives each role's own (`role_env`, `role_settings`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from agentcast.bus import connect, disconnect, ensure_streams
from agentcast.embedded import EmbeddedNats
from agentcast.settings import Settings
from tests.support.nats import PrivateNats


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def settings(nats_server: EmbeddedNats, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data = tmp_path_factory.mktemp("data")
    return Settings.load(
        {"nats_url": nats_server.admin_url, "data_dir": str(data), "jwt_secret": "test-secret"},
        environ={},
    )


@pytest.fixture
async def nc(settings: Settings) -> AsyncIterator[Client]:
    client = await connect(settings, "test")
    await ensure_streams(client.jetstream(), settings)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def js(nc: Client) -> JetStreamContext:
    return nc.jetstream()


@pytest.fixture
async def private_nats(tmp_path: Path) -> AsyncIterator[PrivateNats]:
    server = EmbeddedNats(tmp_path / "private-nats")
    await server.start_async()
    settings = Settings.load({"nats_url": server.admin_url}, environ={})
    client = await connect(settings, "private")
    try:
        await ensure_streams(client.jetstream(), settings)
        yield PrivateNats(server, settings, client)
    finally:
        await disconnect(client)
        server.stop()


@pytest.fixture
def session_id() -> str:
    """A session id no other test uses: isolation by naming."""
    return "t_" + uuid.uuid4().hex[:12]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path


# The gateway fixtures, under the name the tests import them by (one module object).
pytest_plugins = ["tests.support.gateway"]
