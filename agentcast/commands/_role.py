"""A consumer role (archiver, metrics) run from the CLI: NATS found or started, exit codes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nats.aio.client import Client

from agentcast.commands._common import fail, resolve_nats
from agentcast.settings import Settings
from consumers.consumer import LeasedConsumer
from consumers.lease import LeaseHeld
from consumers.role import run_role


def run_consumer(
    settings: Settings, name: str, build: Callable[[Client], LeasedConsumer[Any]]
) -> int:
    """Run `build(nc)` until SIGINT/SIGTERM; exit 1 when another process owns its work."""
    url, server = resolve_nats(settings)
    try:
        return run_role(settings.replace(nats_url=url), name, build)
    except LeaseHeld as exc:
        fail(str(exc), 1)
    finally:
        if server is not None:
            server.stop()
