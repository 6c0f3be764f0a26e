"""`agentcast up`: the whole system from one command, and nothing left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import httpx

from agentcast.embedded import free_port
from tests.support.up import Up, running_up
from tests.support.worker import processes_in


def _procs_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        if state != "Z" and text in cmdline:
            found.append(int(entry.name))
    return found


async def test_up_demo_runs_agents_and_sigterm_leaves_no_process(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running_up(data, "--demo", "--speed", "0.2", "--demo-agents", "2") as up:
        assert "NATS       nats://admin:" in up.banner and str(data / "archive") in up.banner
        await _sessions_appear(up)
        assert _procs_mentioning(str(data)), "children run with the data dir on their command line"
        up.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(up.proc.wait(), 45) == 0
    await asyncio.sleep(0.5)
    assert _procs_mentioning(str(data)) == []
    assert processes_in(data) == []


async def _sessions_appear(up: Up) -> None:
    headers = {"Authorization": f"Bearer {up.token}"}
    async with httpx.AsyncClient(base_url=up.base, headers=headers, timeout=5) as client:
        assert (await client.get("/readyz")).status_code == 200
        sessions: list = []
        for _ in range(150):  # demo agents appear on their own, bounded wait
            sessions = (await client.get("/v1/sessions")).json()["sessions"]
            if sessions:
                break
            await asyncio.sleep(0.2)
        assert sessions, "demo sessions should show up in the progress snapshots"


async def test_a_sigterm_during_startup_stops_the_children_already_started(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentcast.cli", "up", "--data", str(data), "--port", str(free_port()),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        # Before the banner: the first children are up, the gateway not yet ready.
        await _wait_for_pid(data, "worker")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 45) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    await asyncio.sleep(0.5)
    assert _procs_mentioning(str(data)) == []


async def _on_a_busy_port(tmp_path: Path, command: str) -> tuple[int, int | None, str]:
    """`agentcast <command>` on a port another socket listens on: (port, exit code, stderr)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agentcast.cli", command, "--data", str(tmp_path / "data"),
            "--port", str(port), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    return port, proc.returncode, err.decode()


async def test_up_on_a_busy_port_names_the_port(tmp_path: Path) -> None:
    port, code, err = await _on_a_busy_port(tmp_path, "up")
    assert code == 1
    assert f"port {port} is already in use" in err


async def test_gateway_on_a_busy_port_names_it_before_starting_anything(tmp_path: Path) -> None:
    port, code, err = await _on_a_busy_port(tmp_path, "gateway")
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in err
    assert "Traceback" not in err
    assert not (tmp_path / "data" / "nats").exists()  # no embedded nats-server was started


def _child_pid(data: Path, role: str) -> int | None:
    for pid in _procs_mentioning(str(data)):
        try:
            argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"agentcast.cli" in argv and role.encode() in argv:
            return pid
    return None


async def _wait_for_pid(data: Path, role: str, not_pid: int | None = None) -> int:
    for _ in range(200):  # bounded: about 20 s
        pid = _child_pid(data, role)
        if pid is not None and pid != not_pid:
            return pid
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {role} process")


async def test_a_child_that_keeps_dying_is_reported_and_restarted_and_the_rest_keep_serving(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    async with running_up(data) as up:
        gateway = await _wait_for_pid(data, "gateway")
        victim = await _wait_for_pid(data, "archiver")
        # Dying again and again (bounded: five kills): each death is reported with its log,
        # the archiver comes back every time, and the gateway never stops.
        for _ in range(5):
            os.kill(victim, signal.SIGKILL)
            victim = await _wait_for_pid(data, "archiver", not_pid=victim)
            assert up.proc.returncode is None
        headers = {"Authorization": f"Bearer {up.token}"}
        async with httpx.AsyncClient(base_url=up.base, headers=headers, timeout=5) as client:
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.get("/v1/sessions")).status_code == 200
        assert _child_pid(data, "gateway") == gateway
        up.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(up.proc.wait(), 45) == 0
    stderr = (data / "up.stderr").read_text()
    log = data / "logs" / "archiver.log"
    assert f"archiver exited with code -9; restarting in 0.5s (log: {log}" in stderr
    assert stderr.count("agentcast: error: archiver keeps exiting") == 2, stderr
    assert "the rest keep serving" in stderr and "stopping everything" not in stderr
    assert stderr.count("archiver restarted [pid") == 5
    await asyncio.sleep(0.5)
    assert _procs_mentioning(str(data)) == []
