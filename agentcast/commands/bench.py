"""`agentcast bench ...`: load generators; `produce` replays agent traces into NATS."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from agentcast.bus import connect, disconnect, ensure_streams
from agentcast.commands._common import (
    add_common_args,
    fail,
    resolve_nats,
    settings_from_args,
    setup_logging,
)
from agentcast.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench", help="load generators and benchmarks")
    bench = p.add_subparsers(dest="bench_command", required=True, metavar="BENCH")
    produce = bench.add_parser(
        "produce", help="replay recorded agent traces for many sessions straight to NATS"
    )
    add_common_args(produce)
    produce.add_argument("--sessions", type=int, default=100, help="concurrent synthetic sessions")
    produce.add_argument(
        "--rate", type=float, default=20.0, help="events/s per session; 0 = as fast as acks allow"
    )
    produce.add_argument(
        "--seconds", type=float, default=10.0, help="how long to publish (bounded)"
    )
    produce.add_argument("--prefix", default="", help="session id prefix (default: random)")
    produce.add_argument("--json", action="store_true", help="print the report as one JSON line")
    produce.set_defaults(func=_produce, log_level="WARNING")


def _produce(args: argparse.Namespace) -> int:
    setup_logging(args)
    if not 1 <= args.sessions <= 100_000:
        fail("--sessions must be from 1 to 100000")
    if args.rate < 0 or not 0 < args.seconds <= 3600:
        fail("--rate must be >= 0 and --seconds within (0, 3600]")
    settings = settings_from_args(args)
    url, server = resolve_nats(settings)
    try:
        report = asyncio.run(_run_produce(settings.replace(nats_url=url), args))
    finally:
        if server is not None:
            server.stop()
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"published {report['events']} events for {report['sessions']} sessions "
            f"in {report['seconds']:.2f}s: {report['events_per_s']:.0f} events/s"
        )
    return 0


async def _run_produce(settings: Settings, args: argparse.Namespace) -> dict[str, float]:
    from producer.synthetic import freeze_startup_objects, load_trace, produce, trace_files

    traces = [load_trace(path) for path in trace_files()]
    freeze_startup_objects()
    assert settings.nats_url
    nc = await connect(settings, "agentcast-bench-produce")
    try:
        js = nc.jetstream()
        await ensure_streams(js, settings)

        def progress(events: int, elapsed: float) -> None:
            if not args.json:
                print(f"\r{elapsed:5.1f}s  {events} events", end="", file=sys.stderr, flush=True)

        from producer.acks import AckRouter

        acks = await AckRouter(nc).start()
        report = await produce(
            acks,
            sessions=args.sessions,
            rate=args.rate,
            seconds=args.seconds,
            max_msg_size=settings.max_msg_size,
            traces=traces,
            prefix=args.prefix,
            progress=progress,
        )
        if not args.json:
            print(file=sys.stderr)
        return dict(vars(report))
    finally:
        await disconnect(nc)
