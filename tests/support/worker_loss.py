"""What the worker-loss tests share: a small bound, bounded waits, stopping roles."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from agentcast.bus import connect, disconnect
from agentcast.settings import Settings
from agentcast.subjects import EVENTS_STREAM, session_type_filter
from tests.support.nats import PrivateNats, role_settings
from tests.support.roles import Role, wait_until
from tests.support.worker import processes_in

LOST_AFTER_S = 6.0
"""worker_lost_after_s in these tests: small, still twice the heartbeat TTL a loaded machine needs."""
SLACK_S = 30.0


async def streaming(js: JetStreamContext, session: str, timeout: float = 60) -> None:
    """Until the session's agent has streamed text (its CLI is running), bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await js.get_last_msg(
                EVENTS_STREAM, session_type_filter(session, "text.delta"), direct=True
            )
            return
        except NotFoundError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"{session} never streamed text")


async def no_cli_left(workspace: Path) -> None:
    await wait_until(lambda: processes_in(workspace) == [], 20, f"no process left in {workspace}")


async def wait_for_value(
    probe: Callable[[], Awaitable[object]], expected: object, timeout: float
) -> None:
    """Poll an async probe until it returns `expected`, bounded."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await probe()
        if last == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"still {last!r}, expected {expected!r}")


def stop_all(*roles: Role) -> None:
    for role in roles:
        role.stop()


def as_worker(private: PrivateNats) -> Settings:
    """The test server as the `worker` user sees it (its own credentials, no admin)."""
    return role_settings(private.settings, private.server, "worker")


@asynccontextmanager
async def worker_client(
    private: PrivateNats, name: str = "agentcast-worker"
) -> AsyncIterator[Client]:
    nc = await connect(as_worker(private), name)
    try:
        yield nc
    finally:
        await disconnect(nc)
