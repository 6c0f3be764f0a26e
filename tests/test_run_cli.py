"""`agentcast run` against `agentcast up --demo`, in a pseudo-terminal as a person sees it."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.up import Up, running_up

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
async def system(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Up]:
    data = tmp_path_factory.mktemp("up") / "data"
    async with running_up(data, "--demo", "--demo-agents", "0", "--speed", "0.3") as up:
        yield up


class Terminal:
    """`agentcast run ...` on a pty: what a person would see, and its exit code."""

    def __init__(self, system: Up, *args: str) -> None:
        primary, secondary = pty.openpty()
        self._primary = primary
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agentcast.cli",
                "run",
                *args,
                "--gateway",
                system.base,
                "--token",
                system.token,
            ],
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
            close_fds=True,
            env={**os.environ, "COLUMNS": "100", "TERM": "xterm-256color"},
        )
        os.close(secondary)
        self.screen = ""

    def read_until(self, pattern: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while pattern not in self.text and time.monotonic() < deadline:
            self._read(0.2)
        assert pattern in self.text, self.text[-3000:]

    def _read(self, wait: float) -> None:
        import select

        ready, _, _ = select.select([self._primary], [], [], wait)
        if ready:
            try:
                self.screen += os.read(self._primary, 65536).decode(errors="replace")
            except OSError:
                pass

    @property
    def text(self) -> str:
        return _ANSI.sub("", self.screen)

    def finish(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self._read(0.2)
        self._read(0.1)
        os.close(self._primary)
        code = self.process.wait(5)
        return code


async def test_a_tool_run_shows_live_and_exits_zero(system: Up) -> None:
    term = Terminal(system, "[scenario:bash] say hello from the shell")
    code = await asyncio.to_thread(term.finish)
    assert code == 0, term.text[-3000:]
    text = term.text
    assert "Using Bash" in text and "done" in text
    assert "scripted-bash-ok" in text  # the streamed answer quotes the real output
    for row in ("completed", "duration", "turns", "tools", "Bash ×1", "tokens", "cost"):
        assert row in text, row


async def test_a_failed_run_exits_one(system: Up) -> None:
    term = Terminal(system, "[scenario:api_error] this fails")
    code = await asyncio.to_thread(term.finish)
    assert code == 1, term.text[-2000:]
    assert "api_error" in term.text and "failed" in term.text


async def test_ctrl_c_cancels_the_run_and_exits_130(system: Up) -> None:
    term = Terminal(system, "[scenario:slow] a long answer please")
    await asyncio.to_thread(term.read_until, "Streaming an agent")
    term.process.send_signal(signal.SIGINT)
    code = await asyncio.to_thread(term.finish)
    assert code == 130, term.text[-2000:]
    assert "cancelled" in term.text


async def test_json_mode_prints_one_event_per_line(system: Up, tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentcast.cli",
        "run",
        "[scenario:quick] hi",
        "--json",
        "--gateway",
        system.base,
        "--token",
        system.token,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    import json

    events = [json.loads(line) for line in out.decode().splitlines()]
    assert proc.returncode == 0
    assert events[0]["type"] == "run.queued" and events[-1]["type"] == "run.completed"
    assert [e["seq"] for e in events] == list(
        range(events[0]["seq"], events[0]["seq"] + len(events))
    )


async def test_a_refused_request_prints_the_gateway_error_and_exits_two(system: Up) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentcast.cli",
        "run",
        "  ",
        "--session",
        "bad.id",
        "--gateway",
        system.base,
        "--token",
        system.token,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert "agentcast: error: invalid_" in err.decode()
