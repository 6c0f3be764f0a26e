"""SSE endpoints: one session's events, and the firehose over a session glob.

The routes (FastAPI: auth, parameters, cursor checks, OpenAPI) end in an
`EventStream` response, which sends the headers through ASGI and then writes
event bytes straight to the transport via its Sink (gateway/sink.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Final

from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from agentcast.codec import encode
from agentcast.errors import AgentcastError
from gateway.auth import ReadClaims, checked_session
from gateway.errors import ApiError
from gateway.feed import SessionMatch, Subscription
from gateway.frames import chunk, sse_event, sse_retry
from gateway.hub import FIREHOSE
from gateway.params import (
    NOW,
    glob_covers,
    glob_session,
    parse_from,
    parse_glob,
    parse_types,
    replay_filter,
)
from gateway.sink import Sink, Watch, hand_off, transport_of

if TYPE_CHECKING:
    from gateway.app import Gateway

logger = logging.getLogger(__name__)
router = APIRouter(tags=["streams"])

CLOSE_GRACE_S: Final = 5.0
"""How long a finished stream may take to flush before its connection is aborted."""
_HEADERS: Final = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]

FromQuery = Annotated[str | None, Query(alias="from", description="start | now | <cursor>")]
TypesQuery = Annotated[list[str] | None, Query(description="e.g. text.delta,tool.*")]
LastEventId = Annotated[str | None, Header(alias="Last-Event-ID")]


def retry_ms(base: int, spread: int) -> int:
    """A reconnection delay with jitter, so a restart does not cause a reconnect stampede."""
    return base + random.randint(0, spread)


_STREAM_DOC: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "content": {"text/event-stream": {}},
        "description": "id: cursor, event: type, data: envelope",
    },
    400: {"description": "invalid_cursor: a cursor this stream never issued"},
    410: {"description": "cursor_expired: the cursor is older than retention"},
}


@router.get(
    "/v1/sessions/{session}/events",
    summary="Stream one session's events (SSE)",
    response_class=Response,
    response_model=None,
    responses=_STREAM_DOC,
)
async def session_events(
    request: Request, session: str, claims: ReadClaims, from_: FromQuery = None,
    types: TypesQuery = None, last_event_id: LastEventId = None,
) -> EventStream:  # fmt: skip
    gw: Gateway = request.app.state.gateway
    checked_session(gw.auth, claims, "read", session)
    return await _open(gw, session, session, None, from_, types, last_event_id, session.__eq__)


@router.get(
    "/v1/events",
    summary="Stream the events of every session matching a glob (SSE)",
    response_class=Response,
    response_model=None,
    responses=_STREAM_DOC,
)
async def firehose(
    request: Request, claims: ReadClaims, sessions: str | None = None, from_: FromQuery = None,
    types: TypesQuery = None, last_event_id: LastEventId = None,
) -> EventStream:  # fmt: skip
    gw: Gateway = request.app.state.gateway
    glob = parse_glob(sessions, default=claims.sessions)
    if not glob_covers(claims.sessions, glob):
        gw.stats.auth_failures += 1
        raise ApiError(403, "forbidden", f"token covers sessions {claims.sessions!r}, not {glob!r}")
    single = glob_session(glob)
    return await _open(
        gw,
        single or FIREHOSE,
        glob,
        SessionMatch(glob, claims.sessions),
        from_,
        types,
        last_event_id,
        # A firehose cursor is a stream position: any event the token may read.
        SessionMatch(claims.sessions),
    )


async def _open(
    gw: Gateway, key: str, name: str, sessions: SessionMatch | None,
    from_: str | None, types: list[str] | None, last_event_id: str | None,
    covers: Callable[[str], bool],
) -> EventStream:  # fmt: skip
    try:
        after = parse_from(from_, last_event_id)
    except AgentcastError as exc:
        raise ApiError(400, exc.code, str(exc)) from exc
    type_filter = parse_types(types)
    subject = replay_filter(None if key == FIREHOSE else key, type_filter)
    if after > 0:
        await gw.reader.check_resume(after, subject, covers)
    return EventStream(gw, key, name, subject, after, type_filter, sessions)


class EventStream(Response):
    """The streaming half of an SSE request, as an ASGI response."""

    media_type = "text/event-stream"

    def __init__(
        self,
        gw: Gateway,
        key: str,
        name: str,
        subject: str,
        after: int,
        types: Any,
        sessions: SessionMatch | None,
    ) -> None:
        # Response.__init__ is not called: this response renders no body up front.
        self.background = None
        self.status_code = 200
        self.gw = gw
        self.key = key
        self.name = name
        self.subject = subject
        self.after = after
        self.types = types
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gw = self.gw
        self.sink = Sink(
            transport_of(scope), "sse", gw.settings.client_buffer_bytes, gw.stats, gw.hub.flusher
        )
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        self.sink.write(chunk(sse_retry(retry_ms(1000, 2000))))
        hand_off(scope, self.run)

    async def run(self, receive: Receive, send: Send) -> None:
        """The stream, once FastAPI has returned (see `hand_off`): events until the sink ends."""
        gw, sink = self.gw, self.sink
        stats = gw.stats
        stats.connections["sse"] += 1
        stats.connections_total["sse"] += 1
        gw.hub.sinks.add(sink)
        try:
            if gw.hub.closing:
                sink.finish("shutdown")
            else:
                await self._stream(sink, receive)
        finally:
            gw.hub.sinks.discard(sink)
            stats.connections["sse"] -= 1
            sink.finish("disconnected")
        await _close(sink, send)

    async def _stream(self, sink: Sink, receive: Receive) -> None:
        sub = Subscription(
            self.name,
            sink,
            self.subject,
            after=self.after,
            types=self.types,
            sessions=self.sessions,
        )
        sink.subs.append(sub)
        await self.gw.hub.attach(self.key, sub)
        # An SSE client sends nothing more: its disconnect is heard on the transport.
        watch = Watch(sink)
        try:
            if self.after != NOW:
                try:
                    await sub.catch_up(self.gw.reader, self.gw.settings.replay_batch)
                except Exception:
                    logger.exception("replay failed for %s", self.name)
                    sink.finish("error")
            await sink.wait()
        finally:
            watch.stop()


async def _close(sink: Sink, send: Send) -> None:
    """Say why the stream ends (lagged: the cursor; shutdown: a jittered retry), then end it."""
    if sink.reason == "lagged":
        notice = {
            "cursor": next(iter(sink.cursors().values()), None),
            "message": "client fell behind; reconnect with Last-Event-ID to resume",
        }
        sink.write(chunk(sse_event(None, "lagged", encode(notice))))
    elif sink.reason in ("shutdown", "error"):
        sink.write(chunk(sse_retry(retry_ms(500, 4500), "gateway restarting: reconnect")))
    elif sink.transport.is_closing():
        return
    try:
        await asyncio.wait_for(
            send({"type": "http.response.body", "body": b"", "more_body": False}), CLOSE_GRACE_S
        )
    except (TimeoutError, OSError):
        sink.transport.abort()
        # Let uvicorn see the connection lost before the app returns.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
