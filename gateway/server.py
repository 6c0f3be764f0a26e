"""Serving the gateway: uvicorn with a streaming-aware shutdown, and N worker processes.

Shutdown (SIGTERM or Ctrl+C): the hub first finishes every stream, so SSE
clients get a jittered `retry:` and an ended response and WebSockets close
with 1012; then uvicorn stops accepting, waits for connections (at most
SHUTDOWN_BOUND_S) and runs the lifespan's exit, which drains NATS.

The gateway binds its listening socket itself and accepts from it with its
own loop (gateway/accept.py): uvloop's accepts one connection per turn.
`--workers N` starts N processes on that one socket, each with its own NATS
connection and hub: NATS does the cross-process fan-out.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import Final

import uvicorn

from agentcast._internals import HeadLimits, StreamingServer, guarded_http
from agentcast.logs import redact_handlers
from agentcast.memory import compact_set
from agentcast.settings import Settings
from gateway.accept import Acceptor
from gateway.app import GatewayApp, create_app
from gateway.parking import ParkingLot
from gateway.ws import HARD_CAP_FACTOR

logger = logging.getLogger(__name__)

SHUTDOWN_BOUND_S: Final = 8
_SUPERVISOR_GRACE_S: Final = SHUTDOWN_BOUND_S + 7


def config_for(app: GatewayApp, settings: Settings, *, log_level: str = "info") -> uvicorn.Config:
    limits = HeadLimits(
        settings.max_header_bytes, settings.max_request_bytes, settings.header_timeout_s,
        app.stats.hit,
    )  # fmt: skip
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=guarded_http(limits, shrink=compact_set),
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_keep_alive=max(1, round(settings.idle_timeout_s)),
        ws="websockets-sansio",
        ws_max_size=settings.ws_max_frame_bytes * HARD_CAP_FACTOR,
        ws_per_message_deflate=False,
        lifespan="on",
        timeout_graceful_shutdown=SHUTDOWN_BOUND_S,
        access_log=False,
        log_config=None,
        log_level=log_level.lower(),
        proxy_headers=False,
    )


def listening_socket(settings: Settings) -> socket.socket:
    """The gateway's socket, bound (OSError if it cannot be); listened on by `Acceptor`."""
    sock = socket.socket(
        socket.AF_INET6 if ":" in settings.host else socket.AF_INET, socket.SOCK_STREAM
    )
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def streaming_server(
    app: GatewayApp, settings: Settings, *, log_level: str = "info"
) -> StreamingServer:
    """The uvicorn server for `app`, accepting through `Acceptor`, parking replays in a storm
    (`ParkingLot`); `run(sockets=[sock])`."""

    def listen(
        sock: socket.socket, protocol_factory: Callable[[], asyncio.Protocol], backlog: int
    ) -> Acceptor:
        lot = ParkingLot(
            app.stats, park_at=settings.replay_park_at, queue_max=settings.replay_queue
        )
        acceptor = Acceptor(
            sock, lot.factory(protocol_factory), backlog=backlog,
            on_out_of_fds=lambda: app.stats.hit("nofile"), on_close=lot.release_all,
        )  # fmt: skip
        host, port = acceptor.address
        logger.info("Gateway listening on http://%s:%d (Press CTRL+C to quit)", host, port)
        return acceptor

    return StreamingServer(config_for(app, settings, log_level=log_level), app.end_streams, listen)


def serve(settings: Settings, sock: socket.socket, *, log_level: str = "info") -> None:
    """Run one gateway process on `sock` until it is told to stop."""
    streaming_server(create_app(settings), settings, log_level=log_level).run(sockets=[sock])


def _worker(settings: Settings, sock: socket.socket, log_level: str) -> None:
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s[%(process)d]: %(message)s",
        stream=sys.stderr,
    )
    redact_handlers()
    serve(settings, sock, log_level=log_level)


def run(
    settings: Settings, sock: socket.socket, *, workers: int = 1, log_level: str = "info"
) -> int:
    """Serve on `sock` (from `listening_socket`) with `workers` processes; returns an exit
    status. The caller closes `sock`."""
    if workers <= 1:
        serve(settings, sock, log_level=log_level)
        return 0
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_worker, args=(settings, sock, log_level), name=f"gateway-{i}")
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    logger.info("Started %d gateway workers on %s:%d", workers, settings.host, settings.port)

    def _forward(sig: int, frame: FrameType | None) -> None:
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                proc.terminate()

    previous = {s: signal.signal(s, _forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for proc in procs:
            proc.join()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for proc in procs:
            proc.join(_SUPERVISOR_GRACE_S)
            if proc.is_alive():
                proc.kill()
    # uvicorn re-raises the stop signal after a clean shutdown: that is a normal exit.
    stopped = {0, -signal.SIGTERM, -signal.SIGINT}
    return max((0 if p.exitcode in stopped else abs(p.exitcode or 1) for p in procs), default=0)
