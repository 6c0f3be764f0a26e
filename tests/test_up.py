"""`agentcast up`: the whole system from one command, and nothing left behind."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import httpx

from agentcast.embedded import free_port
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


async def _start_up(data: Path, port: int, *extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentcast.cli", "up", "--data", str(data), "--port", str(port), *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def test_up_demo_runs_agents_and_sigterm_leaves_no_process(tmp_path: Path) -> None:
    data, port = tmp_path / "data", free_port()
    proc = await _start_up(data, port, "--demo", "--speed", "0.2", "--demo-agents", "2")
    assert proc.stdout is not None
    banner = ""
    async with asyncio.timeout(60):
        while "Press Ctrl+C" not in banner:
            line = await proc.stdout.readline()
            assert line, f"up exited early: {(await proc.stderr.read()).decode()[-2000:]}"  # type: ignore[union-attr]
            banner += line.decode()
    match = re.search(r"Dashboard\s+(http://\S+)\?token=(\S+)", banner)
    assert match, banner
    base, token = match.groups()
    assert "NATS       nats://127.0.0.1:" in banner and str(data / "archive") in banner
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=5) as client:
        assert (await client.get("/readyz")).status_code == 200
        sessions: list = []
        for _ in range(150):  # demo agents appear on their own, bounded wait
            sessions = (await client.get("/v1/sessions")).json()["sessions"]
            if sessions:
                break
            await asyncio.sleep(0.2)
        assert sessions, "demo sessions should show up in the progress snapshots"
    assert _procs_mentioning(str(data)), "children run with the data dir on their command line"
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 45) == 0
    await asyncio.sleep(0.5)
    assert _procs_mentioning(str(data)) == []
    assert processes_in(data) == []


async def test_up_on_a_busy_port_names_the_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = await _start_up(tmp_path / "data", port)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert f"port {port} is already in use" in err.decode()
