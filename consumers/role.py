"""Running a consumer role: NATS connection, signals, clean shutdown.

The CLI layer (agentcast/commands/_role.py) finds the NATS server and turns
errors into exit codes; this module knows nothing of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client

from agentcast.lifecycle import role_connection, stop_on_signals
from agentcast.settings import Settings
from consumers.consumer import LeasedConsumer


def run_role(settings: Settings, name: str, build: Callable[[Client], LeasedConsumer[Any]]) -> int:
    """Run the consumer `build(nc)` on `settings.nats_url` until SIGINT/SIGTERM.

    Raises LeaseHeld when another process owns its work.
    """

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop.set)
        async with role_connection(settings, name) as nc:
            await build(nc).run(stop)

    asyncio.run(main())
    return 0
