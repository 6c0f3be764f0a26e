"""The `agentcast` command: one subcommand per role or client tool."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _scripted_model(args: argparse.Namespace) -> int:
    from producer.scripted_model import serve

    serve(host=args.host, port=args.port, scenarios_dir=args.scenarios, speed=args.speed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentcast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("scripted-model", help="local Anthropic Messages API playing scenario files")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8723)
    p.add_argument("--scenarios", default=None, help="directory of scenario files (default: bundled)")
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="pacing multiplier; 0 streams as fast as possible (tests)",
    )
    p.set_defaults(func=_scripted_model)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
