"""The gateway ASGI app: factory, lifespan (NATS connection, readers, hub) and operations routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any, Final

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, PlainTextResponse, Response

from agentcast.bus import ensure_streams, servers
from agentcast.lifecycle import role_connection
from agentcast.settings import Settings
from agentcast.subjects import EVENTS_STREAM, RUNS_STREAM
from agentcast.tokens import load_secret
from gateway import api, dashboard, errors, openapi, progress, sse, ws
from gateway.admission import Admission
from gateway.auth import Authenticator
from gateway.deps import State
from gateway.durable import routes as durable
from gateway.durable.appstreams import AppStreams
from gateway.hub import Hub
from gateway.openapi import answers
from gateway.output import RAW_SEND
from gateway.replay import DirectReader
from gateway.revocations import Revocations
from gateway.sink import STREAM
from gateway.slots import StreamSlots
from gateway.state import STATE_KEY, GatewayState, state_of
from gateway.telemetry import Stats, render

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
_REVOCATIONS_LOAD_S = 5.0
_READY_S: Final = 0.6
"""/readyz answers 503 when JetStream has not answered within this (a stall flips it in 1 s)."""


def create_app(settings: Settings) -> GatewayApp:
    """The gateway app; NATS is connected by its lifespan, from `settings.nats_url`."""
    if not settings.nats_url:
        raise ValueError("the gateway needs settings.nats_url")
    secret = load_secret(settings)
    stats = Stats()  # made here: the server's protocol (gateway/server.py) counts into it too

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, GatewayState]]:
        hooks: dict[str, Hub] = {}

        async def on_reconnect() -> None:
            if "hub" in hooks:
                await hooks["hub"].on_reconnect()

        async def on_error(exc: Exception) -> None:
            if "hub" in hooks:
                await hooks["hub"].on_error(exc)

        async with role_connection(
            settings, "agentcast-gateway", on_reconnect=on_reconnect, on_error=on_error
        ) as nc:
            kv = await ensure_streams(nc.jetstream(), settings)
            reader = DirectReader(
                nc, EVENTS_STREAM, lookup_timeout=settings.nats_timeout_s, stats=stats
            )
            await reader.start()
            hub = Hub(
                nc, reader, stats, replay_batch=settings.replay_batch,
                heartbeat_s=settings.heartbeat_s, fastpath=settings.gateway_fastpath,
                admission=Admission.of(settings, stats, forget=reader.shared.clear),
            )  # fmt: skip
            hooks["hub"] = hub
            slots = StreamSlots(nc.jetstream(), settings)
            await slots.start()
            revocations = Revocations(slots.revoke)
            auth = Authenticator(
                secret, stats, max_lifetime_s=settings.token_max_lifetime_s, revoked=revocations
            )
            state = GatewayState(settings, nc, hub, reader, kv, auth, stats, slots, revocations)
            state.app_streams = await AppStreams.open(nc, settings, stats)
            if isinstance(app, GatewayApp):
                app.hub = hub
                app.app_streams = state.app_streams
            if not settings.gateway_fastpath:
                logger.warning("Gateway fast path off: nats-py callbacks and ASGI send only")
            logger.info("Gateway ready on NATS %s", ",".join(servers(settings)))
            tasks = [
                asyncio.create_task(hub.heartbeats()),
                asyncio.create_task(stats.loop_lag.watch()),
                asyncio.create_task(slots.renew()),
                asyncio.create_task(revocations.watch(nc.jetstream(), settings)),
            ]
            try:
                await asyncio.wait_for(revocations.loaded.wait(), _REVOCATIONS_LOAD_S)
            except TimeoutError:
                logger.warning("revoked tokens not loaded yet; serving, still watching")
            try:
                yield {STATE_KEY: state}
            finally:
                for task in tasks:
                    task.cancel()
                await state.close()

    app = GatewayApp(
        stats,
        fastpath=settings.gateway_fastpath,
        title="agentcast gateway",
        version="1",
        description="Claude agent events over SSE and WebSocket, with exact resume.",
        lifespan=lifespan,
    )
    errors.install(app, lambda request, limit: state_of(request).stats.hit(limit))
    openapi.install(app, settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "HEAD", "PUT", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Last-Event-ID",
                "If-None-Match",
                "Stream-Seq",
            ],
            expose_headers=["Content-Type", *durable.EXPOSED_HEADERS],
        )
    app.include_router(sse.router)
    app.include_router(api.router)
    app.include_router(progress.router)
    app.include_router(dashboard.router)
    app.include_router(durable.router)
    app.add_api_websocket_route("/v1/ws", ws.endpoint)

    @app.get("/healthz", tags=["operations"], responses=answers())
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/readyz", tags=["operations"], responses=answers(503))
    async def readyz(gw: State) -> Response:
        problem = None
        if not gw.nc.is_connected:
            problem = "NATS is not connected"
        else:
            try:
                # A stalled server keeps the connection up: only an answer in time is ready.
                async with asyncio.timeout(_READY_S):
                    for stream in (EVENTS_STREAM, RUNS_STREAM):
                        await gw.js.stream_info(stream)
            except TimeoutError:
                problem = f"JetStream did not answer within {_READY_S:g} s"
            except Exception as exc:  # noqa: BLE001 - any failure means not ready
                problem = f"stream missing or JetStream unavailable: {exc!r}"
        if problem:
            return errors.json_error(503, "not_ready", problem)
        return JSONResponse({"ready": True})

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse, responses=answers())
    async def metrics(gw: State) -> Response:
        return Response(render(gw.registry), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


_ASGI_SCOPE_KEYS = frozenset(
    ("type", "asgi", "http_version", "method", "scheme", "path", "raw_path", "query_string",
     "root_path", "headers", "client", "server", "subprotocols", "extensions")
)  # fmt: skip
"""What a stream's scope keeps once handed off: ASGI's own keys, without the copy of the
lifespan `state` (only the framework reads it, and it has returned)."""


class GatewayApp(FastAPI):
    """FastAPI that keeps the server's own `send` in the scope, and runs handed-off streams
    (only with `fastpath`; otherwise plain FastAPI).

    Streaming responses write event bytes straight to the connection's
    transport (see gateway/sink.py) and find it through that `send`, which
    Starlette's middleware would otherwise hide behind wrappers. A stream route
    authenticates, validates and starts its response through FastAPI, then
    hands the rest off (`hand_off`): it runs here, after the framework has
    returned, with the server's own receive and send. An idle connection then
    costs its transport, its protocol and one small coroutine, not a request's
    worth of middleware frames and exit stacks (about half its memory).
    """

    def __init__(self, stats: Stats, *, fastpath: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stats = stats
        self.fastpath = fastpath
        self.hub: Hub | None = None
        """The lifespan's hub, for the server's shutdown (`end_streams`)."""
        self.app_streams: AppStreams | None = None

    def end_streams(self) -> None:
        """Tell every streaming client to reconnect (before the server waits for connections)."""
        if self.hub is not None:
            logger.info("Telling %d streaming clients to reconnect", len(self.hub.sinks))
            self.hub.shutdown()
        if self.app_streams is not None:
            self.app_streams.shutdown()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if not self.fastpath or scope["type"] not in ("http", "websocket"):
            await super().__call__(scope, receive, send)
            return
        scope[RAW_SEND] = send
        await super().__call__(scope, receive, send)
        stream = scope.pop(STREAM, None)
        if stream is not None:
            # The framework's per-request entries (exit stacks, route, app) would outlive it
            # here; clear() also gives back the dict's grown table.
            kept = {k: v for k, v in scope.items() if k in _ASGI_SCOPE_KEYS}
            scope.clear()
            scope.update(kept)
            del kept  # this frame lives as long as the stream
            await stream(receive, send)
