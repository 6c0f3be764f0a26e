"""Replay of one 20,000-event session to one client: agentcast SSE, Durable Streams SSE,
Durable Streams catch-up pages. Medians of 3 runs each, one gateway, one nats-server.

    flock /work/bench.lock .venv/bin/python bench/durable_replay.py
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from httpx_sse import aconnect_sse

from agentcast.bus import connect, ensure_streams
from agentcast.embedded import EmbeddedNats
from agentcast.settings import Settings
from tests.support.events import build_events, publish_events, simple_run
from tests.support.gateway import GatewayProcess, auth
from tests.support.nats import role_env

SESSION = "bench_durable"
RUNS = 3

Reader = Callable[[httpx.AsyncClient, int], Awaitable[int]]


async def agentcast_sse(http: httpx.AsyncClient, total: int) -> int:
    n = 0
    async with aconnect_sse(http, "GET", f"/v1/sessions/{SESSION}/events", headers=auth()) as src:
        async for sse in src.aiter_sse():
            n += sse.event != "message" and bool(sse.data)
            if n >= total:
                break
    return n


async def durable_sse(http: httpx.AsyncClient, total: int) -> int:
    n = 0
    params = {"offset": "-1", "live": "sse"}
    path = f"/ds/v1/sessions/{SESSION}"
    async with aconnect_sse(http, "GET", path, params=params, headers=auth()) as src:
        async for sse in src.aiter_sse():
            if sse.event == "data":
                n += len(json.loads(sse.data))
            elif sse.event == "control" and "upToDate" in sse.data and n >= total:
                break
    return n


async def durable_catch_up(http: httpx.AsyncClient, total: int) -> int:
    n, offset = 0, "-1"
    while True:
        reply = await http.get(f"/ds/v1/sessions/{SESSION}", params={"offset": offset},
                               headers=auth())  # fmt: skip
        n += len(reply.json())
        offset = reply.headers["Stream-Next-Offset"]
        if reply.headers.get("Stream-Up-To-Date") == "true":
            return n


async def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="durable-bench-"))
    server = EmbeddedNats(tmp / "nats")
    await server.start_async()
    gateway = GatewayProcess(server.url, tmp / "gw", env=role_env(server, "gateway"))
    try:
        settings = Settings.load({"nats_url": server.admin_url}, environ={})
        nc = await connect(settings, "bench")
        await ensure_streams(nc.jetstream(), settings)
        events = build_events(SESSION, simple_run(n_text=19_990))
        await publish_events(nc.jetstream(), events)
        await nc.close()
        gateway.start()
        readers: list[tuple[str, Reader]] = [
            ("agentcast SSE from=start", agentcast_sse),
            ("Durable Streams live=sse", durable_sse),
            ("Durable Streams catch-up pages", durable_catch_up),
        ]
        async with httpx.AsyncClient(base_url=gateway.url, timeout=120) as http:
            for name, read in readers:
                times = []
                for _ in range(RUNS):
                    start = time.perf_counter()
                    assert await read(http, len(events)) == len(events), name
                    times.append(time.perf_counter() - start)
                median = statistics.median(times)
                print(f"{name:32s} {len(events)} events: median {median * 1000:.0f} ms "
                      f"({len(events) / median:,.0f} events/s), runs "
                      f"{[round(t, 3) for t in times]}")  # fmt: skip
    finally:
        gateway.stop()
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
