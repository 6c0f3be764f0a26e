"""A consumer role (archiver, metrics) run from the CLI: NATS found or started, exit codes.

Imported when the commands are registered: the consumers are imported only
when one runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentcast.commands._common import fail, resolve_nats
from agentcast.settings import Settings

if TYPE_CHECKING:
    from nats.aio.client import Client

    from consumers.consumer import LeasedConsumer


def add_partition_args(p: argparse.ArgumentParser, role: str, what: str) -> None:
    """`--partitions N --partition I` into the settings `<role>_partitions`, `<role>_partition`."""
    p.add_argument("--partitions", dest=f"{role}_partitions", type=int, help=what)
    p.add_argument(
        "--partition", dest=f"{role}_partition", type=int, help="which one this is (0-based)"
    )


def run_consumer(
    settings: Settings, name: str, build: Callable[[Client], LeasedConsumer[Any]]
) -> int:
    """Run `build(nc)` until SIGINT/SIGTERM; exit 1 when another process owns its work."""
    from consumers.lease import LeaseHeld
    from consumers.role import run_role

    url, server = resolve_nats(settings)
    try:
        return run_role(settings.replace(nats_url=url), name, build)
    except LeaseHeld as exc:
        fail(str(exc), 1)
    finally:
        if server is not None:
            server.stop()
