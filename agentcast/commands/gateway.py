"""`agentcast gateway`: the SSE/WebSocket gateway over NATS."""

from __future__ import annotations

import argparse

from agentcast.commands._common import (
    add_common_args,
    fail,
    resolve_nats,
    settings_from_args,
    setup_logging,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("gateway", help="serve events over SSE and WebSocket, and the HTTP API")
    add_common_args(p)
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to bind (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="processes sharing the port (default 1)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from gateway.server import listening_socket, run

    setup_logging(args)
    if args.workers < 1:
        fail("--workers must be at least 1")
    settings = settings_from_args(args)
    try:  # before NATS: a busy port is said at once
        sock = listening_socket(settings)
    except OSError as exc:
        fail(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror} (pass --port)", 1)
    with sock:
        url, embedded = resolve_nats(settings)
        try:
            return run(
                settings.replace(nats_url=url), sock, workers=args.workers, log_level=args.log_level
            )
        finally:
            if embedded is not None:
                embedded.stop()
