"""System W1: `agentcast up` with every role (no demo) under W1, beside Nchan in the same run.

    python bench/system_w1.py [--runs 3] [--seconds 10] [--nchan-workers 1]
    python bench/run.py system-w1 [--runs 3]

Each run: `agentcast up` in a fresh data directory (its own nats-server,
gateway, archiver, metrics consumer and worker, as a new user starts it),
then W1 as bench/fanout.py runs it: 1,000 SSE clients from the C load client
(bench/loadclient.c) over 100 sessions, 20 events/s each published straight
to JetStream. Reported over the measured seconds: CPU per delivery of every
process (from /proc/<pid>/task/*/schedstat), the system's sum without
nats-server, latency p50/p99 and loss (each client's count and seq checks),
and whether the archiver and the metrics consumer kept up (`*_behind`: how
far their ack floors are from the stream's end once the feed stopped, after
waiting up to 15 s). Then nginx + Nchan on the same workload; `vs_nchan` is
the system's CPU per delivery over Nchan's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _procs
from _client import build
from _feed import NatsTarget
from fanout import Workload, _measure, run

from agentcast.bus import connect
from agentcast.embedded import free_port
from agentcast.settings import Settings
from agentcast.subjects import EVENTS_STREAM

W1 = Workload(clients=1000, sessions=100, rate=20)
ROLES = ("archiver", "metrics", "worker", "up")
"""Besides the gateway (`server`) and nats-server (`nats`)."""
_CATCH_UP_S = 15.0


@dataclass
class _Gateway(_procs.Server):
    """The gateway that `agentcast up` started (the run measures its processes)."""

    pid: int = 0

    def pids(self) -> list[int]:
        return _procs.descendants(self.pid)


def _children(pid: int) -> list[int]:
    found = []
    for p in _procs.descendants(pid):
        try:
            if int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(p)
        except (OSError, IndexError, ValueError):
            continue
    return found


def _role_pids(up_pid: int) -> dict[str, list[int]]:
    """Each role's processes, by the command line `agentcast up` started it with."""
    roles: dict[str, list[int]] = {"up": [up_pid]}
    for child in _children(up_pid):
        argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        if b"nats-server" in argv[0]:
            roles["nats"] = [child]
        elif b"agentcast.cli" in argv:
            roles[argv[argv.index(b"agentcast.cli") + 1].decode()] = _procs.descendants(child)
    return roles


@contextmanager
def up(tmp: Path) -> Iterator[tuple[_Gateway, dict[str, list[int]], str]]:
    """`agentcast up` (no demo) on a free port: its gateway, every role's pids, the admin URL."""
    port = free_port()
    data = tmp / "data"
    cmd = [sys.executable, "-m", "agentcast.cli", "up", "--data", str(data), "--port", str(port),
           "--log-level", "WARNING"]  # fmt: skip
    env = {
        "AGENTCAST_MAX_STREAMS_PER_TOKEN": "100000000",
        **os.environ,
        "AGENTCAST_JWT_SECRET": _procs.SECRET,
    }
    with (tmp / "up.log").open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            _procs.wait_http(port, "/readyz")
            roles = _role_pids(proc.pid)
            missing = {"nats", "gateway", *ROLES} - set(roles)
            if missing:
                raise RuntimeError(f"agentcast up has no {sorted(missing)}: {roles}")
            url = (data / "nats.url").read_text().strip()
            gateway = _Gateway("agentcast", port, proc, pid=roles.pop("gateway")[0])
            time.sleep(1.0)
            yield gateway, roles, url
        finally:
            _procs.stop(proc)


async def _behind(url: str) -> dict[str, object]:
    """How far the archiver's and metrics' ack floors are from the stream's end (bounded wait)."""
    settings = Settings.load({"nats_url": url}, environ={})
    nc = await connect(settings, "bench-system-w1")
    js = nc.jetstream()
    started = time.monotonic()
    try:
        while True:
            last = (await js.stream_info(EVENTS_STREAM)).state.last_seq
            behind = {}
            for name, durable in (("archive", settings.archive_consumer),
                                  ("metrics", settings.metrics_consumer)):  # fmt: skip
                info = await js.consumer_info(EVENTS_STREAM, durable)
                behind[name] = last - (info.ack_floor.stream_seq or 0)
            if not any(behind.values()) or time.monotonic() - started > _CATCH_UP_S:
                break
            await asyncio.sleep(0.1)
    finally:
        await nc.close()
    return {
        "archive_behind": behind["archive"],
        "metrics_behind": behind["metrics"],
        "consumers_caught_up_s": round(time.monotonic() - started, 2),
    }


async def system_run(w: Workload) -> dict[str, object]:
    _procs.raise_nofile()
    with tempfile.TemporaryDirectory(prefix="agentcast-system-") as name:
        tmp = Path(name)
        binary = build(tmp)
        with up(tmp) as (gateway, roles, url):
            nats = roles.pop("nats")
            result = await _measure(w, gateway, NatsTarget(url), nats, binary, tmp, None, roles)
            result.update(await _behind(url))
    parts = ["cpu_us_per_delivery", *(f"{r}_us_per_delivery" for r in ROLES)]
    result["system_us_per_delivery"] = round(sum(float(result[k]) for k in parts), 2)  # type: ignore[arg-type]
    return result


_TABLE = ("system_us_per_delivery", "cpu_us_per_delivery", "archiver_us_per_delivery",
          "metrics_us_per_delivery", "worker_us_per_delivery", "up_us_per_delivery",
          "nats_us_per_delivery", "p50_ms", "p99_ms", "deliveries_per_s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--nchan-workers", type=int, default=1)
    parser.add_argument("--no-nchan", action="store_true")
    args = parser.parse_args()
    w = replace(W1, seconds=args.seconds)
    ours: list[dict[str, object]] = []
    theirs: list[dict[str, object]] = []
    for i in range(args.runs):
        mine = asyncio.run(system_run(w))
        if not args.no_nchan:
            nchan = asyncio.run(run(w, "nchan", args.nchan_workers))
            theirs.append(nchan)
            mine["vs_nchan"] = round(
                float(mine["system_us_per_delivery"]) / float(nchan["cpu_us_per_delivery"]),
                2,  # type: ignore[arg-type]
            )
            print(json.dumps({"run": i + 1, **nchan}), flush=True)
        print(json.dumps({"run": i + 1, **mine}), flush=True)
        ours.append(mine)

    def med(rs: list[dict[str, object]], k: str) -> float:
        return statistics.median(float(r[k]) for r in rs)  # type: ignore[arg-type]

    print(f"\n## system W1: medians of {args.runs} ({args.seconds:g} s measured)")
    print("| " + " | ".join(k.replace("_us_per_delivery", " µs") for k in _TABLE) + " | lost |")
    print("|" + "---|" * (len(_TABLE) + 1))
    lost = sum(int(r["missing"]) + int(r["gaps"]) + int(r["closed_early"]) for r in ours)  # type: ignore[call-overload]
    print("| " + " | ".join(f"{med(ours, k):.2f}" for k in _TABLE) + f" | {lost} |")
    if theirs:
        nchan_cpu, ratio = med(theirs, "cpu_us_per_delivery"), med(ours, "vs_nchan")
        print(f"\nNchan: {nchan_cpu:.2f} µs/delivery, p50 {med(theirs, 'p50_ms'):.2f} ms, "
              f"p99 {med(theirs, 'p99_ms'):.2f} ms; system / Nchan: {ratio:.2f}x")  # fmt: skip
    behind = [(r["archive_behind"], r["metrics_behind"]) for r in ours]
    print(f"consumers behind at the end (archive, metrics) per run: {behind}")


if __name__ == "__main__":
    main()
