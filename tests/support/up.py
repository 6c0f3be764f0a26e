"""`agentcast up` as a child of the test, started on a free port and read from its ready banner."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from agentcast.embedded import free_port


@dataclass(frozen=True)
class Up:
    proc: asyncio.subprocess.Process
    data: Path
    banner: str

    @property
    def dashboard(self) -> str:
        """The dashboard URL with its token, as printed."""
        match = re.search(r"Dashboard\s+(http://\S+\?token=\S+)", self.banner)
        assert match, self.banner
        return match.group(1)

    @property
    def nats_url(self) -> str:
        """The NATS URL printed, with the admin user's credentials."""
        match = re.search(r"NATS\s+(nats://\S+)", self.banner)
        assert match, self.banner
        return match.group(1)

    @property
    def base(self) -> str:
        return self.dashboard.split("/?", 1)[0]

    @property
    def token(self) -> str:
        return self.dashboard.rsplit("token=", 1)[1]

    def gateway_pid(self) -> int:
        """The gateway that `up` started (our own child's child), found by its command line."""
        for entry in Path("/proc").iterdir():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except (OSError, ValueError):
                continue
            if b"gateway" in cmdline and str(self.data.resolve()).encode() in cmdline:
                return int(entry.name)
        raise AssertionError("no gateway process found")


@asynccontextmanager
async def running_up(data: Path, *args: str, ready_s: float = 60.0) -> AsyncIterator[Up]:
    """`agentcast up --data DATA --port <free> ARGS...` until the block ends, then SIGTERM."""
    data.mkdir(parents=True, exist_ok=True)
    stderr = data / "up.stderr"
    with stderr.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agentcast.cli", "up", "--data", str(data),
            "--port", str(free_port()), *args,
            stdout=asyncio.subprocess.PIPE, stderr=err,
        )  # fmt: skip
    try:
        assert proc.stdout is not None
        banner = ""
        async with asyncio.timeout(ready_s):
            while "Press Ctrl+C" not in banner:
                line = await proc.stdout.readline()
                assert line, f"up exited early: {stderr.read_text()[-2000:]}"
                banner += line.decode()
        yield Up(proc, data, banner)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 45)
            except TimeoutError:
                proc.kill()
                await proc.wait()
