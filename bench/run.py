"""Run a named benchmark three times and print the medians: one command per workload.

    python bench/run.py w1|w2|w3|w4|ws|firehose [--runs 3] [--workers 2] [--seconds 10] [--no-nchan]
    python bench/run.py producer|archiver|metrics|archiver-live|metrics-live|system-w1|progress
    python bench/run.py storm|stall

Fan-out workloads (bench/fanout.py does one run; this repeats it):
  w1        1,000 SSE clients over 100 sessions, 20 events/s each (20,000 deliveries/s)
  w2        100 SSE clients on one hot session, 200 events/s (20,000 deliveries/s)
  w3        10,000 SSE connections over 1,000 sessions, 1 event/s each; memory per idle
            connection measured after the first 5,000 and after all 10,000
  w4        1,000 SSE clients over 100 sessions at 40,000, 60,000 and 80,000 deliveries/s
  ws        w1 over WebSocket and over SSE, alternately (the ratio of their costs)
  firehose  one dashboard following 1,000 sessions (GET /v1/events) at 2 and at 10 events/s
            each, against one client on a single session at the same 2,000 and 10,000 events/s
  storm     2,000 and 5,000 SSE clients replaying a finished 500-event session from the
            start at once, beside Nchan (bench/storm.py); stall: the API during a NATS
            SIGSTOP (bench/stall.py)
Each run of a workload runs agentcast, then nginx + Nchan on the same workload
(unless --no-nchan; Nchan has no glob subscription, so not for the firehose).
Before each run the script waits (up to a minute) for other programs to leave
the CPUs alone, and every run reports the CPU others used meanwhile
(`foreign_cores`). Results go to stdout as JSON lines, then a table of medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _procs
from fanout import Workload, run

_W1 = Workload(clients=1000, sessions=100, rate=20)
WORKLOADS: dict[str, list[tuple[str, Workload]]] = {
    "w1": [("W1", _W1)],
    "w2": [("W2", Workload(clients=100, sessions=1, rate=200))],
    "w3": [("W3", Workload(clients=10_000, sessions=1000, rate=1, stages=2))],
    "w4": [(f"W4 {r}k", replace(_W1, rate=r)) for r in (40, 60, 80)],
    "ws": [("W1 SSE", _W1), ("W1 WS", replace(_W1, transport="ws"))],
    "firehose": [
        ("firehose 2k", Workload(clients=1, sessions=1000, rate=2, firehose=True)),
        ("single session 2k", Workload(clients=1, sessions=1, rate=2000)),
        ("firehose 10k", Workload(clients=1, sessions=1000, rate=10, firehose=True)),
        ("single session 10k", Workload(clients=1, sessions=1, rate=10000)),
    ],
}
_LIVE = ["--live", "--sessions", "100", "--rate", "20", "--runs", "3"]
_CONSUMERS = {"archiver": "archive_bench", "metrics": "metrics_bench"}
OTHERS = {
    "producer": ["producer_bench.py", "--runs", "3"],
    "archiver": ["archive_bench.py", "--events", "200000", "--sessions", "200", "--runs", "3"],
    "metrics": ["metrics_bench.py", "--events", "300000", "--sessions", "200", "--runs", "3"],
    **{f"{role}-live": [f"{script}.py", *_LIVE] for role, script in _CONSUMERS.items()},
    "system-w1": ["system_w1.py", "--runs", "3"],
    "progress": ["progress_bench.py", "--fresh", "--runs", "5"],
    "storm": ["storm.py", "--clients", "2000", "5000", "--runs", "3"],
    "stall": ["stall.py", "--runs", "3"],
}
_QUIET_CORES = 0.4
_QUIET_WAIT_S = 60.0
_FIGURES = ("deliveries_per_s", "cpu_us_per_delivery", "p50_ms", "p99_ms", "nats_us_per_delivery",
            "client_us_per_delivery", "machine_busy_pct", "foreign_cores")  # fmt: skip


def wait_quiet() -> float:
    """Wait until other programs use under _QUIET_CORES (bounded); returns what they used."""
    deadline = time.monotonic() + _QUIET_WAIT_S
    while True:
        before = _procs.machine_busy_s()
        time.sleep(1.0)
        busy = _procs.machine_busy_s() - before
        if busy < _QUIET_CORES or time.monotonic() > deadline:
            return round(busy, 2)
        print(f"# machine busy ({busy:.2f} cores used by others): waiting", file=sys.stderr)


def median_row(results: list[dict[str, object]]) -> dict[str, object]:
    row: dict[str, object] = {k: statistics.median(float(r[k]) for r in results) for k in _FIGURES}  # type: ignore[arg-type]
    stages = len(results[0]["memory_kib_per_conn"])  # type: ignore[arg-type]
    row["memory_kib_per_conn"] = [
        [results[0]["memory_kib_per_conn"][i][0],  # type: ignore[index]
         statistics.median(r["memory_kib_per_conn"][i][1] for r in results)]  # type: ignore[index]
        for i in range(stages)
    ]  # fmt: skip
    row["loss"] = sum(int(r["missing"]) + int(r["gaps"]) + int(r["closed_early"]) for r in results)  # type: ignore[call-overload]
    row["dups"] = sum(int(r["extra"]) + int(r["dups"]) for r in results)  # type: ignore[call-overload]
    row["runs"] = len(results)
    return row


def fanout(name: str, args: argparse.Namespace) -> None:
    servers = _procs.servers_to_run(args.no_nchan)
    results: dict[tuple[str, str], list[dict[str, object]]] = {}
    for i in range(args.runs):
        for label, w in WORKLOADS[name]:
            w = replace(w, seconds=args.seconds, client_procs=args.client_procs)
            for server in servers:
                if server == "nchan" and w.firehose:
                    continue
                quiet = wait_quiet()
                result = asyncio.run(run(w, server, args.workers))
                result = {"workload": label, "run": i + 1, "workers": args.workers,
                          "others_before_cores": quiet, **result}  # fmt: skip
                print(json.dumps(result), flush=True)
                results.setdefault((label, server), []).append(result)
    print(f"\n## {name}: medians of {args.runs} (workers={args.workers}, {args.seconds:g} s)")
    print(
        "| workload | server | deliveries/s | CPU µs/delivery | p50 ms | p99 ms | memory KiB/conn "
        "| nats µs | client µs | machine busy % | foreign cores | lost | dup |"
    )
    print("|" + "---|" * 13)
    for (label, server), rs in results.items():
        m = median_row(rs)
        mem = ", ".join(f"{kib:.1f} @ {n}" for n, kib in m["memory_kib_per_conn"])  # type: ignore[attr-defined]
        print(f"| {label} | {server} | {m['deliveries_per_s']:,.0f} | {m['cpu_us_per_delivery']:.1f} "
              f"| {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {mem} | {m['nats_us_per_delivery']:.1f} "
              f"| {m['client_us_per_delivery']:.1f} | {m['machine_busy_pct']:.0f} "
              f"| {m['foreign_cores']:.2f} | {m['loss']} | {m['dups']} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bench", choices=[*WORKLOADS, *OTHERS])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--workers", type=int, default=2, help="gateway processes (and nginx workers)"
    )
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="measured seconds per run (after 2 s warmup)"
    )
    parser.add_argument("--client-procs", type=int, default=1, help="load client processes")
    parser.add_argument("--no-nchan", action="store_true", help="skip the side-by-side Nchan runs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.bench in OTHERS:
        script, *rest = OTHERS[args.bench]
        rest[rest.index("--runs") + 1] = str(args.runs)
        sys.exit(
            subprocess.run([sys.executable, str(HERE / script), *rest], check=False).returncode
        )
    fanout(args.bench, args)


if __name__ == "__main__":
    main()
