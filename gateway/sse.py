"""SSE endpoints: one session's events, and the firehose over a session glob.

The routes (FastAPI: auth, parameters, cursor checks, OpenAPI) end in an
`SseResponse`, which sends the headers through ASGI, connects a Sink to the
hub and streams until the sink ends (gateway/sink.py, gateway/output.py).
`EventContent` streams events; gateway/progress.py's `ProgressContent` snapshots.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from functools import partial
from typing import Final, Protocol

from fastapi import APIRouter
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from agentcast.codec import encode
from agentcast.errors import AgentcastError, NatsUnavailable
from agentcast.subjects import session_events as session_subject
from gateway.admission import ReplayBusy
from gateway.auth import checked_session
from gateway.deadline import nats_deadline
from gateway.deps import ReadClaims, State
from gateway.errors import ApiError
from gateway.feed import SessionMatch, Subscription
from gateway.formats import FormatStream, FormattedOutput, Style
from gateway.formats.runs import active_run, run_start, run_start_before
from gateway.frames import error_body, sse_event, sse_retry
from gateway.hub import FIREHOSE, Hub, Subscriber
from gateway.openapi import (
    STREAM,
    AcceptHeader,
    CoalesceQuery,
    FormatQuery,
    FromQuery,
    LastEventId,
    RunQuery,
    SessionPath,
    SessionsQuery,
    TypesQuery,
    answers,
    stream,
)
from gateway.output import open_output
from gateway.params import (
    NOW,
    TypeFilter,
    glob_covers,
    glob_session,
    parse_from,
    parse_glob,
    parse_types,
    replay_filter,
)
from gateway.sink import Sink, hand_off
from gateway.slots import Slot
from gateway.state import GatewayState

logger = logging.getLogger(__name__)
router = APIRouter(tags=["streams"])

_HEADERS: Final = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def retry_ms(base: int, spread: int) -> int:
    """A reconnection delay with jitter, so a restart does not cause a reconnect stampede."""
    return base + random.randint(0, spread)


_STREAM_DOC: Final = answers(*STREAM, ok=stream("id: cursor, event: type, data: envelope"))


@router.get(
    "/v1/sessions/{session}/events",
    summary="Stream one session's events (SSE)",
    response_class=Response,
    response_model=None,
    responses=_STREAM_DOC,
)
async def session_events(
    gw: State, session: SessionPath, claims: ReadClaims, from_: FromQuery = None,
    types: TypesQuery = None, last_event_id: LastEventId = None, format_: FormatQuery = None,
    accept: AcceptHeader = None, coalesce_ms: CoalesceQuery = None,
) -> SseResponse:  # fmt: skip
    checked_session(gw.auth, claims, "read", session)
    style = Style(format_, accept, coalesce_ms)
    return await _open(
        gw, claims.jti, session, session, None, from_, types, last_event_id, session.__eq__,
        style,
    )  # fmt: skip


@router.get(
    "/v1/sessions/{session}/stream",
    summary="The session's active run as an AI SDK UI message stream (useChat resume)",
    response_class=Response,
    response_model=None,
    responses={
        **_STREAM_DOC,
        204: {"description": "the session has no active run"},
    },
)
async def chat_stream(
    gw: State, session: SessionPath, claims: ReadClaims, run: RunQuery = None,
    last_event_id: LastEventId = None, coalesce_ms: CoalesceQuery = None,
) -> Response:  # fmt: skip
    """`useChat({resume: true})` asks `GET {api}/{chatId}/stream`: the active run replayed
    from its start (204 when there is none), or with `run=N` that run (waiting for it if
    it is queued); a `Last-Event-ID` continues exactly after it instead."""
    checked_session(gw.auth, claims, "read", session)
    style = Style("ai-sdk", None, coalesce_ms)
    if last_event_id:
        return await _open(gw, claims.jti, session, session, None, None, None, last_event_id,
                           session.__eq__, style)  # fmt: skip
    async with nats_deadline(gw.settings.nats_timeout_s):
        if run is None:
            active = await active_run(gw.reader, session)
            if active is None:
                return Response(status_code=204)
            after, run = active.seq - 1, active.run
        else:
            after = await run_start(gw.reader, session, run)
    content = EventContent(session, session, session_subject(session), after, None, None)
    return SseResponse(gw, claims.jti, content, style.stream(0, run), style.headers)


@router.get(
    "/v1/events",
    summary="Stream the events of every session matching a glob (SSE)",
    response_class=Response,
    response_model=None,
    responses=_STREAM_DOC,
)
async def firehose(
    gw: State, claims: ReadClaims, sessions: SessionsQuery = None, from_: FromQuery = None,
    types: TypesQuery = None, last_event_id: LastEventId = None, format_: FormatQuery = None,
    accept: AcceptHeader = None, coalesce_ms: CoalesceQuery = None,
) -> SseResponse:  # fmt: skip
    style = Style(format_, accept, coalesce_ms)
    glob = parse_glob(sessions, default=claims.sessions)
    if not glob_covers(claims.sessions, glob):
        gw.stats.auth_failures += 1
        raise ApiError(403, "forbidden", f"token covers sessions {claims.sessions!r}, not {glob!r}")
    single = glob_session(glob)
    if style.format == "ai-sdk" and single is None:
        raise ApiError(400, "invalid_format", "format=ai-sdk streams one run of one session")
    return await _open(
        gw,
        claims.jti,
        single or FIREHOSE,
        glob,
        SessionMatch(glob, claims.sessions),
        from_,
        types,
        last_event_id,
        # A firehose cursor is a stream position: any event the token may read.
        SessionMatch(claims.sessions),
        style,
    )


async def _open(
    gw: GatewayState, jti: str, key: str, name: str, sessions: SessionMatch | None,
    from_: str | None, types: list[str] | None, last_event_id: str | None,
    covers: Callable[[str], bool], style: Style,
) -> SseResponse:  # fmt: skip
    try:
        after = parse_from(from_, last_event_id)
    except AgentcastError as exc:
        raise ApiError(400, exc.code, str(exc)) from exc
    type_filter = parse_types(types)
    if type_filter is not None and style.format != "agentcast":
        raise ApiError(400, "invalid_types", f"types= cannot be used with format={style.format}")
    subject = replay_filter(None if key == FIREHOSE else key, type_filter)
    if after > 0:
        async with nats_deadline(gw.settings.nats_timeout_s):
            await gw.reader.check_resume(after, subject, covers)
    start, quiet_until = after, 0
    if after > 0 and style.format != "agentcast" and key != FIREHOSE:
        # Joining mid-run: replay the run from its start for state only, up to the cursor.
        async with nats_deadline(gw.settings.nats_timeout_s):
            begun = await run_start_before(gw.reader, key, after)
        if begun is not None:
            start, quiet_until = begun - 1, after
    content = EventContent(key, name, subject, start, type_filter, sessions)
    # Clients of one session may share live translation; a glob's streams differ per client.
    stream = style.stream(quiet_until, shareable=key != FIREHOSE)
    return SseResponse(gw, jti, content, stream, style.headers)


class SseContent(Protocol):
    """What an SSE response streams once connected: events, or progress snapshots."""

    async def stream(self, client: Subscriber, receive: Receive) -> None:
        """Write to `client.sink` until it is finished, for any reason."""


class SseResponse(Response):
    """The streaming half of an SSE request: a stream slot of the token `jti` (429
    `too_many_streams` when it has none left), headers through ASGI, then `content` until the
    sink ends, then a closing notice. The response object itself is not kept by the stream."""

    media_type = "text/event-stream"

    def __init__(
        self, gw: GatewayState, jti: str, content: SseContent,
        stream: FormatStream | None = None, headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(status_code=200, media_type=self.media_type)
        self.gw = gw
        self.jti = jti
        self.content = content
        self.stream = stream
        self.extra_headers = headers or []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gw = self.gw
        slot = await gw.stream_slot(self.jti, scope, receive, send)
        if slot is None:
            return
        try:
            output = open_output("sse", scope, send)
            if self.stream is not None:
                output = FormattedOutput(output, self.stream)
            sink = Sink(output, gw.settings.client_buffer_bytes, gw.stats, gw.hub.flusher)
            if isinstance(output, FormattedOutput):
                output.bind(sink)
            slot.stream = sink
            headers = _HEADERS + self.extra_headers
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            sink.send(sse_retry(retry_ms(1000, 2000)))
            await hand_off(scope, receive, send, partial(_run, gw.hub, sink, self.content, slot))
        except BaseException:
            slot.release()
            raise


async def _run(
    hub: Hub, sink: Sink, content: SseContent, slot: Slot, receive: Receive, send: Send
) -> None:
    try:
        async with hub.connect(sink) as client:
            if sink.reason is None:
                await content.stream(client, receive)
            await _end(client, send)
    finally:
        slot.release()


class EventContent:
    """A session's (or a glob's) events: replay from the client's position, then live."""

    __slots__ = ("after", "key", "name", "sessions", "subject", "types")

    def __init__(
        self,
        key: str,
        name: str,
        subject: str,
        after: int,
        types: TypeFilter | None,
        sessions: SessionMatch | None,
    ) -> None:
        self.key = key
        self.name = name
        self.subject = subject
        self.after = after
        self.types = types
        self.sessions = sessions

    async def stream(self, client: Subscriber, receive: Receive) -> None:
        sink = client.sink
        sub = Subscription(
            self.name, sink, self.subject, after=self.after, types=self.types,
            sessions=self.sessions,
        )  # fmt: skip
        await client.subscribe(self.key, sub)
        # An SSE client sends nothing more: its output hears the disconnect.
        watch = sink.output.watch(receive, sink.lost)
        try:
            if self.after != NOW:
                try:
                    await client.catch_up(sub)
                    if isinstance(sink.output, FormattedOutput):
                        sink.output.caught_up()
                except Exception as exc:  # noqa: BLE001 - told to the client, truthfully
                    _replay_failed(sink, self.name, exc)
            await sink.wait()
        finally:
            watch.stop()


def _replay_failed(sink: Sink, name: str, exc: Exception) -> None:
    """End a stream whose replay could not run, saying why and when to retry (with jitter)."""
    if isinstance(exc, ReplayBusy):
        sink.send(sse_retry(int(exc.retry_after_s * 1000), str(exc)))
    else:
        if isinstance(exc, NatsUnavailable):
            logger.warning("replay failed for %s: %s", name, exc)
        else:
            logger.exception("replay failed for %s", name)
        why = exc.code if isinstance(exc, AgentcastError) else "internal"
        sink.send(sse_retry(retry_ms(1000, 4000), f"replay failed ({why}): retry"))
    sink.finish("error")


async def _end(client: Subscriber, send: Send) -> None:
    """Say why the stream ends (lagged: the cursor; shutdown: a jittered retry), then end it."""
    sink = client.sink
    # AG-UI and AI SDK clients parse every data line as their own event: no notice for them.
    if sink.reason == "lagged" and not isinstance(sink.output, FormattedOutput):
        notice = {
            "cursor": next(iter(client.cursors().values()), None),
            "message": "client fell behind; reconnect with Last-Event-ID to resume",
        }
        sink.send(sse_event(None, "lagged", encode(notice)))
    elif sink.reason == "shutdown":
        sink.send(sse_retry(retry_ms(500, 4500), "gateway restarting: reconnect"))
    elif sink.reason == "revoked" and not isinstance(sink.output, FormattedOutput):
        sink.send(sse_event(None, "error", error_body("token_revoked", "token revoked")))
    elif sink.output.closing():
        return
    await sink.output.end(send, {"type": "http.response.body", "body": b"", "more_body": False})
