"""Run a real worker pool in the test's event loop, and read what it published."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from agentcast.codec import decode_loose
from agentcast.events import TERMINAL_TYPES, AnyEvent
from agentcast.settings import Settings
from agentcast.subjects import RUNS_STREAM, RUNS_SUBMIT, session_events
from producer.worker import WORKERS_DURABLE, Worker
from tests.support.roles import Role


def worker_settings(settings: Settings, tmp: Path, model_url: str, **changes: object) -> Settings:
    base = {
        "anthropic_base_url": model_url,
        "workspace_root": str(tmp / "workspaces"),
        "claude_config_dir": str(tmp / "claude"),
        "session_hold_s": 2.0,
        "concurrency": 4,
        "default_model": "claude-sonnet-4-5",
    }
    base.update(changes)
    return settings.replace(**base)


@asynccontextmanager
async def running_worker(nc: Client, settings: Settings) -> AsyncIterator[Worker]:
    worker = Worker(nc, settings)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 60)
        # A work-queue stream takes one consumer per subject: leave it free for
        # other tests that read run requests themselves.
        with contextlib.suppress(NotFoundError):
            await nc.jetstream().delete_consumer(RUNS_STREAM, WORKERS_DURABLE)


async def submit(js: JetStreamContext, session: str, prompt: str, **options: object) -> None:
    body = {"session": session, "prompt": prompt, "options": options}
    await js.publish(RUNS_SUBMIT, json.dumps(body).encode())


async def follow(
    js: JetStreamContext, session: str, *, runs: int = 1, timeout: float = 60
) -> list[AnyEvent]:
    """Every event of a session from its start until `runs` runs have closed."""
    sub = await js.subscribe(
        session_events(session),
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    events: list[AnyEvent] = []
    closed = 0
    try:
        async with asyncio.timeout(timeout):
            while closed < runs:
                msg = await sub.next_msg(timeout=timeout)
                event = decode_loose(msg.data)
                events.append(event)
                closed += event.type in TERMINAL_TYPES
    finally:
        await sub.unsubscribe()
    return events


def processes_in(directory: Path) -> list[int]:
    """PIDs of live processes whose working directory is inside `directory`."""
    found = []
    root = str(directory.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        if state != "Z" and (cwd == root or cwd.startswith(root + "/")):
            found.append(int(entry.name))
    return found


def worker_role(
    settings: Settings, tmp: Path, name: str, model_url: str, **changes: object
) -> Role:
    """`agentcast worker` as a real process (for kill -9), with a disk of its own under tmp/name."""
    home = tmp / name
    values: dict[str, object] = {
        "nats_url": settings.nats_url,
        "data_dir": str(home / "data"),
        "anthropic_base_url": model_url,
        "workspace_root": str(home / "workspaces"),
        "claude_config_dir": str(home / "claude"),
        "session_hold_s": 0.5,
        "concurrency": 1,
    }
    # Whatever credentials the test's settings carry, the worker gets too (via env, never argv).
    for field in ("nats_user", "nats_password"):
        if getattr(settings, field, None):
            values[field] = getattr(settings, field)
    values.update(changes)
    env = {
        "AGENTCAST_" + key.upper(): str(value) for key, value in values.items() if value is not None
    }
    return Role("worker", ["--log-level", "INFO"], env, tmp / f"{name}.log", "Worker ready")
