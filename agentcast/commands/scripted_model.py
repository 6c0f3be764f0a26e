"""`agentcast scripted-model`: the local Anthropic Messages API for demos and tests."""

from __future__ import annotations

import argparse

from agentcast.commands._common import setup_logging


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("scripted-model", help="local Anthropic Messages API playing scenario files")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8723)
    p.add_argument(
        "--scenarios", default=None, help="directory of scenario files (default: bundled)"
    )
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="pacing multiplier; 0 streams as fast as possible (tests)",
    )
    p.add_argument("--log-level", default="WARNING")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from producer.scripted_model import serve

    setup_logging(args)
    serve(host=args.host, port=args.port, scenarios_dir=args.scenarios, speed=args.speed)
    return 0
