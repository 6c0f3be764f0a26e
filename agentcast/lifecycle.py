"""One lifecycle shape for every role: startup, main loop until told to stop, bounded shutdown.

    async with role_connection(settings, "agentcast-worker") as nc:   # startup: connect
        worker = Worker(nc, settings)
        stop_on_signals(worker.stop)                                   # SIGINT / SIGTERM
        await worker.run()                                             # main loop
    # shutdown: NATS drained within agentcast.bus's drain bound, then closed

The gateway's lifespan (gateway/app.py), the worker (agentcast/commands/worker.py)
and the consumers (consumers/role.py) all run this way, and log the same phases.
`finished_before` is the one way two things are raced (a task against a stop event).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from nats.aio.client import Client

from agentcast.bus import connect, disconnect
from agentcast.settings import Settings

logger = logging.getLogger(__name__)


@asynccontextmanager
async def role_connection(
    settings: Settings,
    name: str,
    *,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
    on_error: Callable[[Exception], Awaitable[None]] | None = None,
) -> AsyncIterator[Client]:
    """The role's NATS connection: made at startup, drained (bounded) and closed at shutdown."""
    logger.info("%s: starting", name)
    nc = await connect(settings, name, on_reconnect=on_reconnect, on_error=on_error)
    try:
        yield nc
    finally:
        logger.info("%s: shutting down, draining NATS", name)
        await disconnect(nc, drain=True)
        logger.info("%s: stopped", name)


def stop_on_signals(stop: Callable[[], None]) -> None:
    """Call `stop` on SIGINT and SIGTERM (the main loop then returns by itself)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)


async def finished_before(
    task: asyncio.Future[Any], event: asyncio.Event, timeout: float | None = None
) -> bool:
    """Wait until `task` is done (True), or `event` is set or `timeout` passes (False).

    `task` is left running when it loses (the caller cancels or awaits it);
    the event's waiter never outlives the call.
    """
    if task.done():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({task, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    return task.done()
