"""One fan-out run: N SSE or WebSocket clients over S sessions, R events/s per session, on loopback.

Starts its own nats-server and `agentcast gateway --workers W` (or nginx with
Nchan, `--server nchan`), connects the C load client (bench/loadclient.c),
publishes for warmup + `--seconds`, and reports, over the measured seconds:
deliveries/s; CPU-µs per delivery of the gateway (every gateway process,
from /proc), of nats-server, of the client and of this producer; the CPU
other programs used meanwhile (`foreign`); latency p50/p99 from the envelope's
`ts` to receipt; server memory per idle connection (PSS growth after
connecting, divided by the connections); and loss: every connection's count
against what its sessions published, plus the client's seq checks.

    python bench/fanout.py --clients 1000 --sessions 100 --rate 20 --seconds 10 [--workers 2]

bench/run.py runs the named workloads (W1-W4, WS vs SSE, firehose) three
times each, side by side with Nchan, and prints the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _procs
from _client import LoadClient, Spec, build
from _feed import NatsTarget, NchanTarget, feed

from agentcast.bus import connect, ensure_streams
from agentcast.settings import Settings
from agentcast.tokens import mint_token

_DRAIN_S = 10.0


@dataclass(frozen=True)
class Workload:
    clients: int
    sessions: int
    rate: float
    """Events/s per session."""
    transport: str = "sse"
    firehose: bool = False
    """Every client follows all sessions (`GET /v1/events`), instead of one each."""
    stages: int = 1
    """Connect the clients in this many equal steps, measuring memory after each."""
    seconds: float = 10.0
    warmup: float = 2.0
    size: int = 100
    client_procs: int = 1


def session_ids(count: int) -> list[str]:
    return [f"s{i}" for i in range(count)]


def specs_for(w: Workload, server: str, token: str) -> list[Spec]:
    sessions = session_ids(w.sessions)
    specs = []
    for i in range(w.clients):
        if w.firehose:
            # Nchan has no glob subscription; agentcast's firehose is one upstream subscription.
            specs.append(
                Spec(f"/v1/events?sessions=*&from=now&token={token}", tuple(sessions), multi=True)
            )
            continue
        s = sessions[i % len(sessions)]
        if server == "nchan":
            specs.append(Spec(f"/sub/{s}", (s,)))
        elif w.transport == "ws":
            frame = json.dumps(
                {"op": "subscribe", "session": s, "from": "now"}, separators=(",", ":")
            )
            specs.append(Spec(f"/v1/ws?token={token}", (s,), frame=frame))
        else:
            specs.append(Spec(f"/v1/sessions/{s}/events?from=now&token={token}", (s,)))
    return specs


async def run(
    w: Workload, server: str = "agentcast", workers: int = 1, profile: Path | None = None
) -> dict[str, object]:
    """One run in a fresh temp dir with fresh servers; returns the figures as a dict."""
    _procs.raise_nofile()
    with tempfile.TemporaryDirectory(prefix="agentcast-bench-") as name:
        tmp = Path(name)
        binary = build(tmp)
        with _procs.nats(tmp) as nats:
            setup = Settings.load({"nats_url": nats.admin_url}, environ={})
            nc = await connect(setup, "bench-setup")
            await ensure_streams(nc.jetstream(), setup)
            await nc.close()
            if server == "nchan":
                with _procs.nchan(tmp, workers) as srv:
                    return await _measure(w, srv, NchanTarget(srv.port), [], binary, tmp, profile)
            with _procs.gateway(nats.admin_url, tmp, workers) as srv:
                assert nats.pid is not None
                return await _measure(
                    w, srv, NatsTarget(nats.admin_url), [nats.pid], binary, tmp, profile
                )


async def _measure(
    w: Workload, srv: _procs.Server, target: NatsTarget | NchanTarget,
    nats_pids: list[int], binary: Path, tmp: Path, profile: Path | None,
    roles: dict[str, list[int]] | None = None,
) -> dict[str, object]:  # fmt: skip
    """One measured run; `roles`: more processes (by name) whose CPU per delivery is reported."""
    token = mint_token(_procs.SECRET, scopes=["read"], ttl_s=3600)
    specs = specs_for(w, srv.name, token)
    server_pids = srv.pids()
    await asyncio.sleep(1)
    mem0 = _procs.pss_kib(server_pids)
    memory = []
    clients: list[LoadClient] = []
    step = -(-len(specs) // w.stages)
    try:
        for i in range(w.stages):
            part = specs[i * step : (i + 1) * step]
            client = LoadClient(binary, w.transport, srv.port, part, tmp, procs=w.client_procs)
            clients.append(client)
            _, failed = await client.start()
            if failed:
                raise RuntimeError(f"{failed} of {len(part)} connections failed")
            await asyncio.sleep(1.5)
            connected = min(len(specs), (i + 1) * step)
            memory.append((connected, (_procs.pss_kib(server_pids) - mem0) / connected))
        await target.open()
        marks: dict[str, float] = {}
        all_pids = {"server": server_pids, "nats": nats_pids,
                    "client": [p for c in clients for p in c.pids()], **(roles or {})}  # fmt: skip

        def sample() -> dict[str, float]:
            out = {k: _procs.cpu_s(v) for k, v in all_pids.items()}
            out["producer"] = time.process_time()
            out["machine"] = _procs.machine_busy_s()
            out["wall"] = time.monotonic()
            return out

        profilers: list[subprocess.Popen[bytes]] = []

        async def on_plan(t0: int) -> None:
            for c in clients:
                await c.command(f"measure {t0}")

        def on_t0() -> None:
            if profile is not None:
                profilers.extend(_profile(server_pids, profile, w.seconds))
            marks.update({f"{k}0": v for k, v in sample().items()})

        loadavg = _procs.loadavg()
        fed = await feed(target, session_ids(w.sessions), w.rate, warmup_s=w.warmup,
                         seconds=w.seconds, size=w.size, on_plan=on_plan, on_t0=on_t0)  # fmt: skip
        feed_end = time.monotonic()
        fed.lost_upstream = await target.close()
        expected_all = sum(fed.total[s] for spec in specs for s in spec.sessions)
        await _drain(clients, expected_all)
        end = sample()
        results = [await c.stop() for c in clients]
        for p in profilers:
            p.wait(60)
    finally:
        for c in clients:
            c.kill()
    merged = results[0]
    for r in results[1:]:
        merged.specs += r.specs
        merged.per_conn += r.per_conn
        merged.last += r.last
        for key in ("closed_early", "events", "measured", "gaps", "dups", "over"):
            setattr(merged, key, getattr(merged, key) + getattr(r, key))
        for b, n in r.hist.items():
            merged.hist[b] = merged.hist.get(b, 0) + n
    missing, extra, short = merged.loss(fed.measured)
    delivered = merged.measured
    window = end["wall"] - marks["wall0"]
    mine = ["server", "nats", "client", "producer", *(roles or {})]
    per = {k: (end[k] - marks[f"{k}0"]) / max(1, delivered) * 1e6 for k in [*mine, "machine"]}
    ours = sum(end[k] - marks[f"{k}0"] for k in mine)
    return {
        "server": srv.name,
        "deliveries": delivered,
        "deliveries_per_s": round(delivered / fed.measured_s),
        "published_per_s": round(sum(fed.measured.values()) / fed.measured_s),
        "cpu_us_per_delivery": round(per["server"], 2),
        "nats_us_per_delivery": round(per["nats"], 2),
        "client_us_per_delivery": round(per["client"], 2),
        "producer_us_per_delivery": round(per["producer"], 2),
        "machine_busy_pct": round((end["machine"] - marks["machine0"]) / window / os.cpu_count() * 100, 1),
        "foreign_cores": round(max(0.0, end["machine"] - marks["machine0"] - ours) / window, 2),
        "loadavg": round(loadavg, 2),
        "p50_ms": round(merged.percentile(0.50), 3),
        "p99_ms": round(merged.percentile(0.99), 3),
        "max_ms": round(merged.percentile(1.0), 3),
        "memory_kib_per_conn": [[n, round(kib, 2)] for n, kib in memory],
        "missing": missing, "extra": extra, "gaps": merged.gaps, "dups": merged.dups,
        "short_conns": short, "tail_missing": merged.tail_missing(fed.total),
        "closed_early": merged.closed_early, "lost_upstream": fed.lost_upstream,
        "drain_s": round(time.monotonic() - feed_end, 2),
        **{f"{k}_us_per_delivery": round(per[k], 2) for k in roles or {}},
    }  # fmt: skip


def _profile(pids: list[int], out: Path, seconds: float) -> list[subprocess.Popen[bytes]]:
    """py-spy (native frames, collapsed stacks) on every Python server process for the window."""
    out.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).parent / "py-spy")
    options = ["--native", "--format", "raw", "--rate", "200", "--duration", str(int(seconds))]
    return [
        subprocess.Popen(
            [spy, "record", *options, "--pid", str(pid), "--output", str(out / f"gw-{pid}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in pids
        if "python" in Path(f"/proc/{pid}/comm").read_text()
    ]


async def _drain(clients: list[LoadClient], expected: int) -> None:
    """Wait until every delivery arrived, or nothing more comes for a second (bounded)."""
    deadline = time.monotonic() + _DRAIN_S
    last, still = -1, time.monotonic()
    while time.monotonic() < deadline:
        got = sum([await c.events() for c in clients])
        if got >= expected:
            await asyncio.sleep(0.2)  # a late duplicate would show now
            return
        if got != last:
            last, still = got, time.monotonic()
        elif time.monotonic() - still > 1.0:
            return
        await asyncio.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20.0, help="events/s per session")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--size", type=int, default=100, help="text bytes per event")
    parser.add_argument(
        "--workers", type=int, default=1, help="gateway processes (nginx workers for nchan)"
    )
    parser.add_argument("--transport", choices=["sse", "ws"], default="sse")
    parser.add_argument("--firehose", action="store_true", help="clients follow every session")
    parser.add_argument("--stages", type=int, default=1)
    parser.add_argument("--client-procs", type=int, default=1)
    parser.add_argument("--server", choices=["agentcast", "nchan"], default="agentcast")
    parser.add_argument("--profile", type=Path, help="write py-spy profiles of the gateway here")
    args = parser.parse_args()
    w = Workload(args.clients, args.sessions, args.rate)
    w = replace(w, transport=args.transport, firehose=args.firehose, stages=args.stages,
                seconds=args.seconds, warmup=args.warmup, size=args.size, client_procs=args.client_procs)  # fmt: skip
    print(json.dumps({"workload": asdict(w), "workers": args.workers,
                      **asyncio.run(run(w, args.server, args.workers, args.profile))}))  # fmt: skip


if __name__ == "__main__":
    main()
