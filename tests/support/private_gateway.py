"""A gateway on a NATS server of its own, seeded, for tests whose requests queue runs.

tests/test_schema.py and tests/test_auth_matrix.py start runs (202s) that no
worker must ever take: on the shared server a later worker test would. The
stack is one nats-server and one `agentcast gateway`, both stopped on exit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from agentcast.bus import connect, disconnect, ensure_streams
from agentcast.codec import encode
from agentcast.embedded import EmbeddedNats
from agentcast.events import Event
from agentcast.progress import ProgressSnapshot
from agentcast.settings import Settings
from agentcast.subjects import SESSIONS_BUCKET
from tests.support.events import publish_events
from tests.support.gateway import GatewayProcess
from tests.support.nats import role_env


@contextmanager
def private_gateway(
    path: Path,
    events: Iterable[Event] = (),
    snapshots: Iterable[ProgressSnapshot] = (),
    env: dict[str, str] | None = None,
) -> Iterator[GatewayProcess]:
    """A started gateway whose stream holds `events` and whose KV holds `snapshots`."""
    server = EmbeddedNats(path / "nats")
    server.start()
    gateway = GatewayProcess(
        server.url, path / "gw", env={**role_env(server, "gateway"), **(env or {})}
    )
    try:
        asyncio.run(_seed(server, list(events), list(snapshots)))
        gateway.start()
        yield gateway
    finally:
        gateway.stop()
        server.stop()


async def _seed(
    server: EmbeddedNats, events: list[Event], snapshots: list[ProgressSnapshot]
) -> None:
    nc = await connect(Settings.load({"nats_url": server.admin_url}, environ={}), "test-seed")
    try:
        js = nc.jetstream()
        await ensure_streams(js, Settings.load({}, environ={}))
        await publish_events(js, events)
        kv = await js.key_value(SESSIONS_BUCKET)
        for snapshot in snapshots:
            await kv.put(snapshot.session, encode(snapshot))
    finally:
        await disconnect(nc)
