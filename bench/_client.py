"""The load client: bench/loadclient.c built with the system C compiler, driven over pipes.

Connections are split over `procs` client processes (each one epoll loop);
their results are merged: delivery counts per connection, gaps and duplicates,
and one latency histogram (10-µs buckets).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from _procs import cpu_s

SOURCE = Path(__file__).resolve().parent / "loadclient.c"
_BUCKET_MS = 0.01


def build(tmp: Path) -> Path:
    """Compile the client into `tmp` (gcc or cc, -O2); about a second."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise RuntimeError("the load client needs a C compiler (apt-get install gcc)")
    binary = tmp / "loadclient"
    subprocess.run([cc, "-O2", "-o", str(binary), str(SOURCE)], check=True)
    return binary


@dataclass
class Spec:
    """One connection: the request path, whether it follows many sessions, a WS frame to send."""

    path: str
    sessions: tuple[str, ...]
    multi: bool = False
    frame: str = ""

    def line(self) -> str:
        head = f"{'M' if self.multi else 'S'} {self.path}"
        return f"{head}\t{self.frame}" if self.frame else head


@dataclass
class Result:
    specs: list[Spec]
    per_conn: list[int]
    last: list[int] = field(default_factory=list)
    """The last seq each single-session connection received (0 for firehose connections)."""
    opened: int = 0
    failed: int = 0
    closed_early: int = 0
    events: int = 0
    measured: int = 0
    gaps: int = 0
    dups: int = 0
    cpu_s: float = 0.0
    hist: dict[int, int] = field(default_factory=dict)
    over: int = 0
    completed: int = 0
    """With LOADCLIENT_UNTIL_SEQ (a replay storm): connections that got the whole replay."""
    got: list[int] = field(default_factory=list)
    """... and per connection: the events it got, the µs from connect to the last (-1: never)."""
    done_us: list[int] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        """Latency in ms at quantile q (bucket upper bound)."""
        total = sum(self.hist.values()) + self.over
        if total == 0:
            return float("nan")
        rank, seen = q * total, 0
        for bucket in sorted(self.hist):
            seen += self.hist[bucket]
            if seen >= rank:
                return (bucket + 1) * _BUCKET_MS
        return float("inf")

    def loss(self, expected: dict[str, int]) -> tuple[int, int, int]:
        """(missing, extra, short connections) against what each connection's sessions published."""
        missing = extra = short = 0
        for spec, got in zip(self.specs, self.per_conn, strict=True):
            want = sum(expected.get(s, 0) for s in spec.sessions)
            missing += max(0, want - got)
            extra += max(0, got - want)
            short += got < want
        return missing, extra, short

    def tail_missing(self, final_seq: dict[str, int]) -> int:
        """Events never received after each single-session connection's last one."""
        return sum(
            max(0, final_seq[spec.sessions[0]] - last)
            for spec, last in zip(self.specs, self.last, strict=True)
            if not spec.multi and last
        )


class LoadClient:
    """`procs` client processes sharing `specs` round-robin."""

    def __init__(
        self, binary: Path, mode: str, port: int, specs: list[Spec], tmp: Path, procs: int = 1
    ):
        self.binary, self.mode, self.port, self.tmp = binary, mode, port, tmp
        self.groups = [specs[i::procs] for i in range(min(procs, len(specs)))]
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, timeout: float = 180.0) -> tuple[int, int]:
        """Start every client process; returns (opened, failed) once all connections settled."""
        for i, group in enumerate(self.groups):
            spec_file = self.tmp / f"spec-{id(self)}-{i}.txt"
            spec_file.write_text("".join(s.line() + "\n" for s in group))
            self.procs.append(await asyncio.create_subprocess_exec(
                str(self.binary), self.mode, str(self.port), str(spec_file),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 26,
            ))  # fmt: skip
        opened = failed = 0
        for proc in self.procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), timeout)
            if not line.startswith(b"ready "):
                raise RuntimeError(f"load client: {line!r}")
            ok, bad = map(int, line.split()[1:3])
            opened, failed = opened + ok, failed + bad
        return opened, failed

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def cpu(self) -> float:
        return cpu_s(self.pids())

    async def command(self, text: str) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(text.encode() + b"\n")
            await proc.stdin.drain()

    async def events(self) -> int:
        """Deliveries so far (every connection, measured or not)."""
        return (await self.progress())[0]

    async def progress(self) -> tuple[int, int, int]:
        """(deliveries, connections closed by the server, connections complete) so far."""
        await self.command("stats")
        events = closed = done = 0
        for proc in self.procs:
            assert proc.stdout is not None
            fields = (await asyncio.wait_for(proc.stdout.readline(), 30)).split()
            events, closed, done = (
                events + int(fields[4]),
                closed + int(fields[3]),
                done + int(fields[5]),
            )
        return events, closed, done

    async def stop(self) -> Result:
        await self.command("stop")
        result = Result(specs=[s for g in self.groups for s in g], per_conn=[])
        for proc in self.procs:
            assert proc.stdout is not None
            out = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
            await asyncio.wait_for(proc.wait(), 30)
            result.per_conn += out["per_conn"]
            result.last += out["last"]
            for key in ("opened", "failed", "closed_early", "events", "measured", "gaps", "dups"):
                setattr(result, key, getattr(result, key) + out[key])
            result.cpu_s += out["cpu_s"]
            result.completed += out.get("completed", 0)
            result.got += out.get("got", [])
            result.done_us += out.get("done_us", [])
            result.over += out["hist_over"]
            for bucket, count in out["hist"]:
                result.hist[bucket] = result.hist.get(bucket, 0) + count
        return result

    def kill(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
