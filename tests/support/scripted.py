"""Run the scripted model as a real process on a free loopback port, for tests.

Usage::

    async with ScriptedModel(speed=0) as model:
        options = ClaudeAgentOptions(cwd=tmp_path, env=model.cli_env(), ...)
        async for message in query(prompt="[scenario:quick] hi", options=options): ...
        bodies = await model.requests()
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import signal
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

__all__ = ["ScriptedModel", "cli_env"]

# uvicorn names the port it really bound, which is how port 0 becomes usable.
_READY_RE = re.compile(rb"Uvicorn running on http://([0-9.]+):(\d+)")
_LOG_LINES = 200


def cli_env(url: str, *, config_dir: str | Path | None = None, **extra: str) -> dict[str, str]:
    """Environment for the Claude Code CLI to talk to the scripted model at `url`, offline.

    Every variable below is read by the bundled CLI (2.1.x). `config_dir`
    isolates ~/.claude (sessions, memory, settings) in a test directory; a
    follow-up that resumes a session must use the same one.
    """
    env = {
        "ANTHROPIC_BASE_URL": url,
        "ANTHROPIC_API_KEY": "test",
        # No telemetry, error reports, update checks or side requests (the
        # session-title call) leave the machine or reach the model.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    if config_dir is not None:
        env["CLAUDE_CONFIG_DIR"] = str(config_dir)
    env.update(extra)
    return env


class ScriptedModel:
    """`agentcast scripted-model` in a subprocess; `.url` once started."""

    def __init__(
        self,
        *,
        speed: float = 0.0,
        scenarios_dir: str | Path | None = None,
        host: str = "127.0.0.1",
        startup_timeout: float = 20.0,
    ) -> None:
        self.speed = speed
        self.scenarios_dir = scenarios_dir
        self.host = host
        self.startup_timeout = startup_timeout
        self.url = ""
        # The server's last log lines, for a failing test to print.
        self.log: collections.deque[str] = collections.deque(maxlen=_LOG_LINES)
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("ScriptedModel already started")
        args = ["-m", "agentcast.cli", "scripted-model", "--host", self.host, "--port", "0"]
        args += ["--speed", str(self.speed), "--log-level", "INFO"]
        if self.scenarios_dir is not None:
            args += ["--scenarios", str(self.scenarios_dir)]
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            self.url = await asyncio.wait_for(self._wait_ready(), self.startup_timeout)
            # Keep reading stderr, or the server blocks once the pipe is full.
            assert self._proc.stderr is not None
            self._drain = asyncio.create_task(self._drain_log(self._proc.stderr))
            async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
                (await client.get("/_scripted/health")).raise_for_status()
        except BaseException:
            await self.stop()
            raise

    async def _wait_ready(self) -> str:
        assert self._proc is not None and self._proc.stderr is not None
        while True:
            line = await self._proc.stderr.readline()
            if not line:
                log = "\n".join(self.log)
                raise RuntimeError(f"scripted model exited before it was ready:\n{log}")
            self.log.append(line.decode(errors="replace").rstrip())
            if match := _READY_RE.search(line):
                return f"http://{match.group(1).decode()}:{match.group(2).decode()}"

    async def _drain_log(self, stderr: asyncio.StreamReader) -> None:
        while line := await stderr.readline():
            self.log.append(line.decode(errors="replace").rstrip())

    async def stop(self) -> None:
        """SIGTERM our own process by PID, SIGKILL if it lingers."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                os.kill(proc.pid, signal.SIGKILL)
                await proc.wait()
        if self._drain is not None:
            await self._drain
            self._drain = None

    async def requests(self) -> list[dict[str, Any]]:
        """The Messages API request bodies the server received, oldest first."""
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            response = await client.get("/_scripted/requests")
            response.raise_for_status()
            bodies: list[dict[str, Any]] = response.json()
            return bodies

    def cli_env(self, *, config_dir: str | Path | None = None, **extra: str) -> dict[str, str]:
        if not self.url:
            raise RuntimeError("ScriptedModel is not started")
        return cli_env(self.url, config_dir=config_dir, **extra)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
