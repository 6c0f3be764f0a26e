"""Repeated NATS stalls (SIGSTOP/SIGCONT of `agentcast up`'s nats-server) mid-run.

`agentcast up` runs everything (its gateway, archiver, metrics and worker, its
embedded nats-server); the synthetic producer and the clients come from
outside, as users' would. The server is frozen several times while events
flow. No role exits (the same processes before and after), `up` keeps
serving, and every client, the archive and the snapshots hold each event
exactly once. CI: two 5 s stalls; the full 5-15 s series is in the soak.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from nats.aio.client import Client

from agentcast.bus import connect, disconnect
from agentcast.settings import Settings
from tests.support.chaos import settle
from tests.support.chaos_load import Load, caught_up, under_load
from tests.support.up import Up, running_up

pytestmark = pytest.mark.timeout(300)


@dataclass
class UpBus:
    """`up`'s server as a Bus: its address and the users' passwords in its data dir."""

    url: str
    credentials: dict[str, str]


def _children(data: Path) -> dict[int, str]:
    """The processes `up` runs for this data dir (its roles and nats-server), by PID."""
    found = {}
    needle = str(data.resolve()).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and b" up " not in cmdline.replace(b"\0", b" "):
            found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")[:120]
    return found


def _nats_pid(data: Path) -> int:
    pids = [pid for pid, cmd in _children(data).items() if "nats-server" in cmd]
    assert len(pids) == 1, _children(data)
    return pids[0]


@pytest.fixture
async def up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Up]:
    monkeypatch.setenv("AGENTCAST_HEARTBEAT_S", "1")  # idle clients look at their goal each second
    async with running_up(tmp_path / "up") as started:
        yield started


@pytest.fixture
async def admin(up: Up) -> AsyncIterator[Client]:
    nc = await connect(Settings.load({"nats_url": up.nats_url}, environ={}), "test-admin")
    try:
        yield nc
    finally:
        await disconnect(nc)


async def stalls_under_load(up: Up, admin: Client, tmp: Path, stalls: list[float]) -> None:
    parts = urlsplit(up.nats_url)
    bus = UpBus(
        f"nats://{parts.hostname}:{parts.port}",
        json.loads((up.data / "credentials.json").read_text()),
    )
    before = _children(up.data)
    nats_pid = _nats_pid(up.data)

    async def stall() -> None:
        for seconds in stalls:
            await asyncio.sleep(2)
            os.kill(nats_pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(seconds)
            finally:
                os.kill(nats_pid, signal.SIGCONT)

    load = Load(sessions=8, ws_clients=4, seconds=sum(stalls) + 2 * len(stalls) + 3)
    outcome = await under_load(
        bus, admin.jetstream, tmp, lambda: [up.base], stall, load, token=lambda: up.token
    )
    consumers = await caught_up(admin.jetstream(), up.data / "archive", outcome.events)
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.get(f"{up.base}/healthz")).status_code == 200
        assert (await http.get(f"{up.base}/readyz")).status_code == 200
    assert up.proc.returncode is None, "up is still running"
    assert _children(up.data) == before, "no role exited or was restarted"
    settle(
        f"{len(stalls)} NATS stalls (SIGSTOP)", outcome.sent, outcome.clients + consumers,
        stalls_s=stalls, roles_unchanged=len(before),
    )  # fmt: skip


async def test_repeated_nats_stalls_no_role_exits_up_keeps_serving_nothing_lost(
    up: Up, admin: Client, tmp_path: Path
) -> None:
    await stalls_under_load(up, admin, tmp_path, [5.0, 5.0])


@pytest.mark.soak
@pytest.mark.timeout(600)
async def test_soak_nats_stalls_of_5_to_15_s(up: Up, admin: Client, tmp_path: Path) -> None:
    await stalls_under_load(up, admin, tmp_path, [5.0, 15.0, 8.0, 12.0])
