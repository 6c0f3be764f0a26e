"""Reconnect storm: N SSE clients replay one finished session from the start, all at once.

    python bench/storm.py [--clients 2000 5000] [--events 500] [--runs 3] [--workers 2]
                          [--client-procs 2] [--no-nchan]

Each run starts fresh servers in a temp dir (nats-server + `agentcast gateway`,
or nginx + Nchan keeping the session in its message buffer), publishes one
session of `--events` envelopes, waits a second, then opens every client at
once (the C load client, bench/loadclient.c: `from=start`, for Nchan
`nchan_subscriber_first_message oldest`). A client is done when it has
received the session's last event, and then hangs up. Figures: streams
complete, streams with 0 events, gaps and duplicates (the client checks that
each stream's seq grows by exactly one), p50 / p99 time from connect to the
last event; /healthz latency (a new connection every 20 ms, from before the
storm until the "after" RSS is read; Nchan: its publisher's channel info); the server's RSS
before, at its peak, and 5 s after the last client hung up; the gateway's
replay counters from /metrics (batch reads from JetStream, and reads answered
by another replay's). Bounded: `--timeout` seconds per storm at most.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _procs
from _client import LoadClient, Spec, build
from _feed import NatsTarget, NchanTarget
from fanout import _profile
from run import wait_quiet

from agentcast.codec import encode
from agentcast.events import TextDeltaData, make_event
from agentcast.tokens import mint_token

SESSION = "storm1"
_PROBE_EVERY_S = 0.02
_PROBE_TIMEOUT_S = 5.0
_AFTER_S = 5.0
_COUNTERS = ("replay_reads", "replay_reads_shared", "replays_queued", "replays_refused")
_LAG_BOUNDS = ("0.05", "0.1", "+Inf")


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


async def _get(port: int, path: str, timeout: float, connected: list[float] | None = None) -> bytes:
    start = time.perf_counter()
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    if connected is not None:
        connected.append((time.perf_counter() - start) * 1000)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


class Probe:
    """Health-check latencies (ms; a failure counts as the timeout) and RSS samples."""

    def __init__(self, port: int, path: str, pids: list[int]) -> None:
        self.port, self.path, self.pids = port, path, pids
        self.latencies: list[float] = []
        self.times: list[float] = []
        self.connects: list[float] = []
        """The TCP connect's share of each latency (a full accept queue shows here)."""
        self.failures = 0
        self.rss_peak = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.rss_peak = max(self.rss_peak, rss_kib(self.pids))
            start = time.perf_counter()
            try:
                answer = await _get(self.port, self.path, _PROBE_TIMEOUT_S, self.connects)
                if not answer.startswith(b"HTTP/1.1 "):
                    raise OSError(answer[:40])
            except (OSError, TimeoutError):
                self.failures += 1
            self.latencies.append((time.perf_counter() - start) * 1000)
            self.times.append(start)
            await asyncio.sleep(_PROBE_EVERY_S)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _publish(target: NatsTarget | NchanTarget, events: int) -> None:
    await target.open()
    text = "x" * 100
    for seq in range(1, events + 1):
        event = make_event(
            TextDeltaData(index=0, text=text), id=f"{SESSION}.{seq}",
            session=SESSION, run=1, seq=seq, ts=time.time_ns(),
        )  # fmt: skip
        await target.publish(SESSION, encode(event))
    lost = await target.close()
    if lost:
        raise RuntimeError(f"{lost} of {events} events were not stored")


async def _counters(port: int, workers: int) -> dict[str, int]:
    """The gateway's replay counters, summed over its processes (scraped until each is seen)."""
    by_pid: dict[str, dict[str, int]] = {}
    for _ in range(20 * workers):
        body = (await _get(port, "/metrics", 10)).decode()
        for line in body.splitlines():
            if line.startswith("agentcast_gateway_loop_lag_seconds_bucket{"):
                le = line.split('le="', 1)[1].split('"', 1)[0]
                if le in _LAG_BOUNDS:
                    pid = line.split('pid="', 1)[1].split('"', 1)[0]
                    by_pid.setdefault(pid, {})[f"lag_le_{le}"] = int(float(line.rsplit(" ", 1)[1]))
            for name in _COUNTERS:
                prefix = f"agentcast_gateway_{name}_total{{"
                if line.startswith(prefix):
                    pid = line.split('pid="', 1)[1].split('"', 1)[0]
                    by_pid.setdefault(pid, {})[name] = int(float(line.rsplit(" ", 1)[1]))
        if len(by_pid) >= workers:
            break
    total = {name: sum(c.get(name, 0) for c in by_pid.values()) for name in _COUNTERS}
    lag = {le: sum(c.get(f"lag_le_{le}", 0) for c in by_pid.values()) for le in _LAG_BOUNDS}
    # The loop-lag histogram since the processes started (the storm is nearly all of it).
    total["loop_lags_over_50ms"] = lag["+Inf"] - lag["0.05"]
    total["loop_lags_over_100ms"] = lag["+Inf"] - lag["0.1"]
    return total


async def storm(
    server: str, clients: int, events: int, workers: int, client_procs: int, timeout: float,
    profile: Path | None = None,
) -> dict[str, object]:  # fmt: skip
    """One storm against fresh servers; returns its figures."""
    _procs.raise_nofile()
    os.environ["LOADCLIENT_UNTIL_SEQ"] = str(events)
    with tempfile.TemporaryDirectory(prefix="agentcast-storm-") as name:
        tmp = Path(name)
        binary = build(tmp)
        if server == "nchan":
            with _procs.nchan(tmp, workers, buffer=events, first="oldest") as srv:
                await _publish(NchanTarget(srv.port), events)
                specs = [Spec(f"/sub/{SESSION}", (SESSION,)) for _ in range(clients)]
                return await _measure(srv, specs, "/pub/probe", binary, tmp, timeout, 0,
                                      client_procs, [])  # fmt: skip
        with _procs.nats(tmp) as nats, _procs.gateway(nats.admin_url, tmp, workers) as srv:
            await _publish(NatsTarget(nats.admin_url), events)
            token = mint_token(_procs.SECRET, scopes=["read"], ttl_s=3600)
            path = f"/v1/sessions/{SESSION}/events?from=start&token={token}"
            specs = [Spec(path, (SESSION,)) for _ in range(clients)]
            assert nats.pid is not None
            return await _measure(srv, specs, "/healthz", binary, tmp, timeout, workers,
                                  client_procs, [nats.pid], profile)  # fmt: skip


async def _measure(
    srv: _procs.Server, specs: list[Spec], probe_path: str, binary: Path, tmp: Path,
    timeout: float, workers: int, client_procs: int, nats_pids: list[int],
    profile: Path | None = None,
) -> dict[str, object]:  # fmt: skip
    pids = srv.pids()
    await asyncio.sleep(1.0)
    others_before = wait_quiet()
    rss0 = rss_kib(pids)
    probe = Probe(srv.port, probe_path, pids)
    stop = asyncio.Event()
    probing = asyncio.create_task(probe.run(stop))
    await asyncio.sleep(0.5)  # a few probes before the storm
    spies = _profile(pids, profile, min(timeout, 15)) if profile else []
    loads = [LoadClient(binary, "sse", srv.port, specs, tmp, procs=client_procs)]
    started = time.perf_counter()
    machine0, server0, nats0 = _procs.machine_busy_s(), _procs.cpu_s(pids), _procs.cpu_s(nats_pids)
    mine0 = time.process_time()
    try:
        await asyncio.gather(*(c.start(timeout) for c in loads))
        deadline = started + timeout
        while time.perf_counter() < deadline:
            got = [await c.progress() for c in loads]
            if sum(closed + done for _, closed, done in got) >= len(specs):
                break
            await asyncio.sleep(0.2)
        storm_s = time.perf_counter() - started
        server_s, nats_s = _procs.cpu_s(pids) - server0, _procs.cpu_s(nats_pids) - nats0
        ours = server_s + nats_s + sum(c.cpu() for c in loads) + time.process_time() - mine0
        foreign = max(0.0, _procs.machine_busy_s() - machine0 - ours) / storm_s
        results = [await c.stop() for c in loads]
        await asyncio.sleep(_AFTER_S)  # probed on: "after" is part of the storm's effects
        rss_after = rss_kib(srv.pids())
    finally:
        for c in loads:
            c.kill()
        stop.set()
        await probing
    for spy in spies:
        spy.wait(60)
    done = [us / 1000 for r in results for us in r.done_us if us >= 0]
    got = [n for r in results for n in r.got]
    figures: dict[str, object] = {
        "server": srv.name,
        "clients": len(specs),
        "complete": sum(r.completed for r in results),
        "zero_event_streams": sum(1 for n in got if n == 0),
        "short_streams": sum(1 for n in got if 0 < n < max(got, default=0)),
        "failed_connects": sum(r.failed for r in results),
        "closed_early": sum(r.closed_early for r in results),
        "gaps": sum(r.gaps for r in results),
        "dups": sum(r.dups for r in results),
        "p50_replay_ms": round(_pct(done, 0.50), 1),
        "p99_replay_ms": round(_pct(done, 0.99), 1),
        "max_replay_ms": round(max(done, default=float("nan")), 1),
        "storm_s": round(storm_s, 2),
        "healthz_p50_ms": round(_pct(probe.latencies, 0.50), 2),
        "healthz_p99_ms": round(_pct(probe.latencies, 0.99), 2),
        "healthz_max_ms": round(max(probe.latencies, default=float("nan")), 2),
        "healthz_connect_max_ms": round(max(probe.connects, default=float("nan")), 2),
        "healthz_probes": len(probe.latencies),
        "healthz_worst": sorted(
            ((round(ms), round(t - started, 2)) for ms, t in zip(probe.latencies, probe.times)),
            reverse=True,
        )[:5],
        "healthz_failures": probe.failures,
        "rss_before_mb": round(rss0 / 1024, 1),
        "rss_peak_mb": round(max(probe.rss_peak, rss0) / 1024, 1),
        "rss_after_mb": round(rss_after / 1024, 1),
        "server_cpu_s": round(server_s, 2),
        "nats_cpu_s": round(nats_s, 2),
        "client_cpu_s": round(sum(r.cpu_s for r in results), 2),
        "others_before_cores": others_before,
        "foreign_cores": round(foreign, 2),
    }
    if workers:
        figures.update(await _counters(srv.port, workers))
    return figures


_MEDIANS = ("complete", "zero_event_streams", "p50_replay_ms", "p99_replay_ms", "healthz_p99_ms",
            "healthz_max_ms", "rss_before_mb", "rss_peak_mb", "rss_after_mb")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, nargs="+", default=[2000, 5000])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per storm, at most")
    parser.add_argument("--no-nchan", action="store_true")
    parser.add_argument("--profile", type=Path, help="py-spy profiles of the gateway, here")
    args = parser.parse_args()
    servers = _procs.servers_to_run(args.no_nchan)
    results: dict[tuple[int, str], list[dict[str, object]]] = {}
    for i in range(args.runs):
        for clients in args.clients:
            for server in servers:
                figures = asyncio.run(
                    storm(server, clients, args.events, args.workers, args.client_procs,
                          args.timeout, args.profile)
                )  # fmt: skip
                print(json.dumps({"run": i + 1, "events": args.events, **figures}), flush=True)
                results.setdefault((clients, server), []).append(figures)
    print(f"\n## storm: medians of {args.runs} ({args.events} events, workers={args.workers})")
    print("| clients | server | " + " | ".join(_MEDIANS) + " | gaps+dups (all runs) |")
    print("|" + "---|" * (len(_MEDIANS) + 3))
    for (clients, server), rs in results.items():
        cells = [f"{statistics.median(float(r[k]) for r in rs):g}" for k in _MEDIANS]  # type: ignore[arg-type]
        bad = sum(int(r["gaps"]) + int(r["dups"]) for r in rs)  # type: ignore[call-overload]
        print(f"| {clients:,} | {server} | " + " | ".join(cells) + f" | {bad} |")


if __name__ == "__main__":
    main()
