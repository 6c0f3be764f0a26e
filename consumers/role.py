"""Running a consumer role from the CLI: NATS connection, signals, clean shutdown."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client

from agentcast.bus import connect
from agentcast.commands._common import fail, resolve_nats
from agentcast.settings import Settings
from consumers.consumer import LeasedConsumer
from consumers.lease import LeaseHeld


def run_role(settings: Settings, name: str, build: Callable[[Client], LeasedConsumer[Any]]) -> int:
    """Run the consumer `build(nc)` until SIGINT/SIGTERM; exit 1 when another process owns its work."""
    url, server = resolve_nats(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        nc = await connect(settings.replace(nats_url=url), name)
        try:
            await build(nc).run(stop)
        finally:
            await nc.drain()

    try:
        asyncio.run(main())
    except LeaseHeld as exc:
        fail(str(exc), 1)
    finally:
        if server is not None:
            server.stop()
    return 0
