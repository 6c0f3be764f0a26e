"""What an idle streaming connection costs the gateway, by allocation site (tracemalloc).

    python bench/conn_memory.py [--clients 1000] [--transport sse|ws] [--top 25]

Runs the gateway in this process (uvicorn, as `agentcast gateway` does) with
tracemalloc on, connects `--clients` idle connections from the C load client
(a separate process, so its memory is not counted), and prints the Python heap
growth per connection, by file and line, plus the RSS growth per connection
for comparison (the difference is allocator slack and C allocations outside
Python's allocators, e.g. libuv's and httptools' own structures).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import tracemalloc
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _procs
import uvloop
from _client import LoadClient, build
from fanout import Workload, specs_for

from agentcast.embedded import free_port
from agentcast.settings import Settings
from agentcast.tokens import mint_token
from gateway.app import create_app
from gateway.server import listening_socket, streaming_server


async def probe(clients: int, transport: str, top: int, trace: str) -> None:
    _procs.raise_nofile()
    with tempfile.TemporaryDirectory() as name, _procs.nats(Path(name)) as nats:
        tmp = Path(name)
        binary = build(tmp)
        port = free_port()
        settings = Settings.load(
            {
                "nats_url": nats.admin_url,
                "port": port,
                "data_dir": str(tmp),
                "jwt_secret": _procs.SECRET,
                # One token for every client: slots counted, never refused (as bench/_procs.py).
                "max_streams_per_token": 100_000_000,
            },
            environ={},
        )
        app = create_app(settings)
        server = streaming_server(app, settings, log_level="warning")
        serving = asyncio.create_task(server.serve(sockets=[listening_socket(settings)]))
        while not server.started:
            await asyncio.sleep(0.05)
        token = mint_token(_procs.SECRET, scopes=["read"], ttl_s=3600)
        w = Workload(clients=clients, sessions=max(1, clients // 10), rate=1, transport=transport)
        specs = specs_for(w, "agentcast", token)
        # One connection first, so one-off costs (topic tables, caches) are not counted.
        warm = LoadClient(binary, transport, port, specs[:1], tmp)
        await warm.start()
        await asyncio.sleep(0.5)
        gc.collect()
        tracked0 = Counter(type(o).__qualname__ for o in gc.get_objects())
        tracemalloc.start(8)
        rss0 = _procs.pss_kib([os.getpid()])
        before = tracemalloc.take_snapshot()
        load = LoadClient(binary, transport, port, specs[1:], tmp)
        await load.start()
        await asyncio.sleep(1.5)
        after = tracemalloc.take_snapshot()
        rss1 = _procs.pss_kib([os.getpid()])
        n = clients - 1
        gc.collect()
        tracked = Counter(type(o).__qualname__ for o in gc.get_objects())
        tracked.subtract(tracked0)
        print(f"objects the garbage collector tracks, per connection: {tracked.total() / n:.1f}")
        print("  " + ", ".join(f"{k} {v / n:.1f}" for k, v in tracked.most_common(12)))
        stats = after.compare_to(before, "lineno")
        heap = sum(s.size_diff for s in stats)
        print(f"{n} idle {transport} connections: Python heap +{heap / n / 1024:.2f} KiB each, "
              f"PSS +{(rss1 - rss0) / n:.2f} KiB each (with tracemalloc's own overhead)")  # fmt: skip
        for stat in stats[:top]:
            frame = stat.traceback[0]
            print(f"{stat.size_diff / n:9.0f} B {stat.count_diff / n:6.2f} obj  "
                  f"{frame.filename.split('site-packages/')[-1]}:{frame.lineno}")  # fmt: skip
        if trace:
            print(f"\nwhere the allocations at {trace} come from:")
            for stat in after.compare_to(before, "traceback")[:200]:
                lines = [
                    f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in stat.traceback
                ]
                lines.reverse()  # most recent first
                if lines[0].endswith(trace) and stat.size_diff > 0:
                    print(f"{stat.size_diff / n:7.0f} B  " + " <- ".join(lines[:6]))
        await load.stop()
        await warm.stop()
        server.should_exit = True
        await serving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--transport", choices=["sse", "ws"], default="sse")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--trace", default="", help="FILE:LINE whose call sites to show")
    args = parser.parse_args()
    uvloop.run(probe(args.clients, args.transport, args.top, args.trace))


if __name__ == "__main__":
    main()
