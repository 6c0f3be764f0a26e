"""Fan-out benchmark: N SSE clients over S sessions, a synthetic producer at R events/s per session.

Starts its own nats-server and `agentcast gateway` (loopback only), connects the
clients (raw asyncio sockets, so the client side stays cheap), publishes for
`--seconds`, and reports delivered events/s, end-to-end latency p50/p99
(producer timestamp in the envelope to client receipt), gateway CPU-µs per
delivery (all gateway processes, from /proc) and gateway memory per idle
connection.

    python bench/fanout.py --clients 1000 --sessions 100 --rate 20 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agentcast.bus import connect, ensure_streams
from agentcast.codec import encode
from agentcast.embedded import EmbeddedNats, free_port
from agentcast.events import TextDeltaData, make_event, type_of
from agentcast.settings import Settings
from agentcast.subjects import event_subject
from agentcast.tokens import mint_token

SECRET = "bench-secret-0123456789abcdef0123456789"
_TS = re.compile(rb'"ts":(\d+)')


def _cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime, in ticks
    return total / os.sysconf("SC_CLK_TCK")


def _rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def _gateway_pids(parent: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout.split()
    children = [int(p) for p in out]
    return children or [parent]


class Client:
    def __init__(self) -> None:
        self.events = 0
        self.latencies_ns: list[int] = []
        self.measuring = False

    async def run(self, port: int, session: str, token: str, ready: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        path = f"/v1/sessions/{session}/events?from=now&token={token}"
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await reader.readuntil(b"\r\n\r\n")
        ready.set()
        try:
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    return
                now = time.time_ns()
                if self.measuring:
                    stamps = _TS.findall(data)
                    self.events += len(stamps)
                    self.latencies_ns += [now - int(ts) for ts in stamps]
        finally:
            writer.close()


async def _produce(nc_url: str, sessions: list[str], rate: float, seconds: float, size: int) -> int:
    nc = await connect(nc_url, "bench-producer")
    js = nc.jetstream()
    seq = dict.fromkeys(sessions, 0)
    text = "x" * size
    interval = 1.0 / rate
    sent = 0
    start = time.monotonic()
    tick = 0
    while time.monotonic() - start < seconds:
        acks = []
        for session in sessions:
            seq[session] += 1
            event = make_event(
                TextDeltaData(index=0, text=text), id=f"{session}-{seq[session]}",
                session=session, run=1, seq=seq[session], ts=time.time_ns(),
            )  # fmt: skip
            acks.append(js.publish(event_subject(session, type_of(event)), encode(event)))
        await asyncio.gather(*acks)
        sent += len(sessions)
        tick += 1
        delay = start + tick * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    await nc.close()
    return sent


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedNats(Path(tmp) / "nats")
        server.start()
        await ensure_streams((await connect(server.url, "bench-setup")).jetstream(), Settings.load(environ={}))
        port = free_port()
        cmd = [sys.executable, "-m", "agentcast.cli", "gateway", "--nats", server.url, "--port", str(port),
               "--data", tmp, "--workers", str(args.workers), "--log-level", "WARNING"]  # fmt: skip
        gateway = subprocess.Popen(cmd, env={**os.environ, "AGENTCAST_JWT_SECRET": SECRET})
        try:
            await _wait_ready(port)
            pids = _gateway_pids(gateway.pid)
            rss0 = _rss_kib(pids)
            token = mint_token(SECRET, scopes=["read"], ttl_s=3600)
            sessions = [f"bench_{i}" for i in range(args.sessions)]
            clients = [Client() for _ in range(args.clients)]
            tasks = []
            for i, client in enumerate(clients):
                ready = asyncio.Event()
                tasks.append(asyncio.create_task(client.run(port, sessions[i % len(sessions)], token, ready)))
                await ready.wait()
            await asyncio.sleep(1)
            rss1 = _rss_kib(pids)
            for client in clients:
                client.measuring = True
            cpu0, t0 = _cpu_s(pids), time.monotonic()
            sent = await _produce(server.url, sessions, args.rate, args.seconds, args.size)
            await asyncio.sleep(1)
            cpu1, t1 = _cpu_s(pids), time.monotonic()
            delivered = sum(c.events for c in clients)
            latencies = sorted(lat for c in clients for lat in c.latencies_ns)
            expected = sent * args.clients // args.sessions
            for task in tasks:
                task.cancel()
            p50 = statistics.median(latencies) / 1e6 if latencies else float("nan")
            p99 = latencies[int(len(latencies) * 0.99)] / 1e6 if latencies else float("nan")
            print(f"clients={args.clients} sessions={args.sessions} rate={args.rate}/s/session "
                  f"size={args.size}B workers={args.workers} seconds={args.seconds}")  # fmt: skip
            print(f"published={sent} delivered={delivered} expected={expected} "
                  f"({delivered / max(1, expected):.1%})")  # fmt: skip
            print(f"deliveries/s={delivered / (t1 - t0 - 1):.0f} latency p50={p50:.2f} ms p99={p99:.2f} ms")
            print(f"gateway CPU per delivery={(cpu1 - cpu0) / max(1, delivered) * 1e6:.1f} µs")
            print(f"gateway memory per idle connection={(rss1 - rss0) / args.clients:.1f} KiB")
        finally:
            gateway.terminate()
            gateway.wait(30)
            server.stop()


async def _wait_ready(port: int) -> None:
    for _ in range(200):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if b" 200 " in await reader.readline():
                writer.close()
                return
            writer.close()
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("gateway not ready")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20.0, help="events/s per session")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=100, help="text bytes per event")
    parser.add_argument("--workers", type=int, default=1)
    asyncio.run(main(parser.parse_args()))
