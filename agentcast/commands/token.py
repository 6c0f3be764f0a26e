"""`agentcast token`: mint a bearer token from the configured secret; prints only the token."""

from __future__ import annotations

import argparse

from agentcast.commands._common import fail, settings_from_args
from agentcast.tokens import load_secret, mint_token, parse_scopes, parse_ttl


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("token", help="mint a bearer token for the gateway")
    p.add_argument(
        "--scope", default="read", help="comma-separated: read, run, admin (default read)"
    )
    p.add_argument(
        "--sessions", default="*", help="glob of session ids the token covers (default *)"
    )
    p.add_argument("--ttl", default="1h", help="lifetime, e.g. 30m, 1h, 7d (default 1h)")
    p.add_argument(
        "--data", dest="data_dir", help="data directory holding jwt_secret (default ./.agentcast)"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        scopes = parse_scopes(args.scope)
        ttl = parse_ttl(args.ttl)
    except ValueError as exc:
        fail(str(exc))
    settings = settings_from_args(args)
    print(mint_token(load_secret(settings), scopes=scopes, sessions=args.sessions, ttl_s=ttl))
    return 0
