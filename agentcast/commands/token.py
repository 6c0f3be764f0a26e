"""`agentcast token`: mint a bearer token from the configured secret (prints only the token),
or revoke one by its `jti` on every gateway (`--revoke`)."""

from __future__ import annotations

import argparse
import asyncio
import re

import jwt
import nats.errors

from agentcast.commands._common import fail, resolve_nats, settings_from_args
from agentcast.settings import Settings
from agentcast.tokens import jti_key, load_secret, mint_token, parse_scopes, parse_ttl

_JTI = re.compile(r"[A-Za-z0-9_-]{1,128}")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("token", help="mint a bearer token for the gateway, or revoke one")
    p.add_argument(
        "--scope", default="read", help="comma-separated: read, run, admin (default read)"
    )
    p.add_argument(
        "--sessions", default="*", help="glob of session ids the token covers (default *)"
    )
    p.add_argument("--ttl", default="1h", help="lifetime, e.g. 30m, 1h, 7d (default 1h)")
    p.add_argument(
        "--revoke", metavar="JTI", help="revoke the token with this jti (or this token itself)"
    )
    p.add_argument(
        "--data", dest="data_dir", help="data directory holding jwt_secret (default ./.agentcast)"
    )
    p.add_argument("--nats", dest="nats_url", help="NATS servers (default: the data dir's)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.revoke:
        return _revoke(settings, args.revoke)
    try:
        scopes = parse_scopes(args.scope)
        ttl = parse_ttl(args.ttl)
    except ValueError as exc:
        fail(str(exc))
    if ttl > settings.token_max_lifetime_s:
        fail(
            f"--ttl {args.ttl} is over the gateways' maximum token lifetime "
            f"({settings.token_max_lifetime_s:g}s, AGENTCAST_TOKEN_MAX_LIFETIME_S)"
        )
    print(mint_token(load_secret(settings), scopes=scopes, sessions=args.sessions, ttl_s=ttl))
    return 0


def _jti_of(value: str) -> str:
    """The KV key of a jti as given, or of the jti claim of a token (read unverified:
    revoking needs no trust)."""
    if _JTI.fullmatch(value):
        return value
    try:
        jti = jwt.decode(value, options={"verify_signature": False}).get("jti")
    except jwt.PyJWTError:
        jti = None
    if not isinstance(jti, str) or not jti:
        fail("--revoke takes a token's jti (letters, digits, _ and -) or the token itself")
    return jti_key(jti)


def _revoke(settings: Settings, value: str) -> int:
    from agentcast.bus import connect, disconnect
    from agentcast.revocation import revoke

    jti = _jti_of(value)
    url, _ = resolve_nats(settings, start=False)

    async def _go() -> None:
        nc = await connect(settings.replace(nats_url=url), "agentcast-token")
        try:
            await revoke(nc.jetstream(), settings, jti)
        finally:
            await disconnect(nc)

    try:
        asyncio.run(_go())
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        fail(f"could not reach NATS to revoke the token: {exc}")
    print(jti)
    return 0
