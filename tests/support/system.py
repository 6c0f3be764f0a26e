"""`agentcast up` as a user starts it: a subprocess, its banner parsed, stopped by PID."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from agentcast.embedded import free_port

_BANNER_END = "Press Ctrl+C"


@dataclass
class System:
    process: asyncio.subprocess.Process
    data: Path
    banner: str
    url: str
    token: str

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), 45)


async def start_system(data: Path, *extra: str, port: int | None = None) -> System:
    """Start `agentcast up` and wait for its ready banner (bounded)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentcast.cli", "up", "--data", str(data),
        "--port", str(port or free_port()), *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    banner = ""
    try:
        async with asyncio.timeout(60):
            while _BANNER_END not in banner:
                line = await proc.stdout.readline()
                if not line:
                    err = (await proc.stderr.read()).decode()[-2000:]
                    raise RuntimeError(f"agentcast up exited before it was ready:\n{err}")
                banner += line.decode()
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    match = re.search(r"Dashboard\s+(http://\S+)/\?token=(\S+)", banner)
    assert match, banner
    return System(proc, data, banner, match.group(1), match.group(2))
