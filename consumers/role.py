"""Running a consumer role from the CLI: NATS connection, signals, clean shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client

from agentcast.commands._common import fail, resolve_nats
from agentcast.lifecycle import role_connection, stop_on_signals
from agentcast.settings import Settings
from consumers.consumer import LeasedConsumer
from consumers.lease import LeaseHeld


def run_role(settings: Settings, name: str, build: Callable[[Client], LeasedConsumer[Any]]) -> int:
    """Run the consumer `build(nc)` until SIGINT/SIGTERM; exit 1 when another process owns its work."""
    url, server = resolve_nats(settings)

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop.set)
        async with role_connection(settings.replace(nats_url=url), name) as nc:
            await build(nc).run(stop)

    try:
        asyncio.run(main())
    except LeaseHeld as exc:
        fail(str(exc), 1)
    finally:
        if server is not None:
            server.stop()
    return 0
