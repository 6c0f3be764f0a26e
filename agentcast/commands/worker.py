"""`agentcast worker`: the pool that runs agents for run requests."""

from __future__ import annotations

import argparse
import asyncio
import os

from agentcast.bus import ensure_streams
from agentcast.commands._common import (
    add_common_args,
    resolve_nats,
    settings_from_args,
    setup_logging,
)
from agentcast.lifecycle import role_connection, stop_on_signals
from agentcast.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("worker", help="run agents for run requests (agentcast.runs.submit)")
    add_common_args(p)
    p.add_argument("--concurrency", type=int, help="agents run at once (default 4)")
    p.add_argument(
        "--workspace-root", dest="workspace_root", help="parent of per-session workspaces"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    setup_logging(args)
    settings = settings_from_args(args)
    # The agents' CLI (and every tool it runs) inherits this process's
    # environment: it must not get the worker's NATS password with it.
    os.environ.pop("AGENTCAST_NATS_PASSWORD", None)
    url, server = resolve_nats(settings)
    try:
        asyncio.run(_serve(settings.replace(nats_url=url)))
    finally:
        if server is not None:
            server.stop()
    return 0


async def _serve(settings: Settings) -> None:
    from producer.worker import Worker

    assert settings.nats_url
    async with role_connection(settings, "agentcast-worker") as nc:
        await ensure_streams(nc.jetstream(), settings)
        worker = Worker(nc, settings)
        stop_on_signals(worker.stop)
        await worker.run()
