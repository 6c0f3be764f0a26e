"""`agentcast archiver` / `agentcast metrics` as real subprocesses, for crash and scale-out tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from nats.js import JetStreamContext

from agentcast.subjects import EVENTS_STREAM


class Role:
    """One role process; `start()` returns once its log says it is ready."""

    def __init__(
        self, role: str, args: list[str], env: dict[str, str], log: Path, ready: str
    ) -> None:
        self.cmd = [sys.executable, "-m", "agentcast.cli", role, *args]
        self.env = {**os.environ, **env}
        self.log = log
        self.ready = ready
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 30.0) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=self.env,
                start_new_session=True,
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[offset:].decode(errors="replace")
            if self.ready in text:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.cmd[3]} exited {self.proc.returncode}:\n{text[-3000:]}")
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"{self.cmd[3]} not ready after {timeout}s:\n{self.output()[-3000:]}")

    def kill(self) -> None:
        """kill -9, the crash."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def next_stream_seq(js: JetStreamContext) -> int:
    """Where a consumer created now should start to see only what this test publishes."""
    return (await js.stream_info(EVENTS_STREAM)).state.last_seq + 1


async def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll a condition (bounded in time); fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def cli(
    *args: str, check: bool = False, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`agentcast ARGS...` to completion, off the event loop."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "agentcast.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
        env=env,
    )
