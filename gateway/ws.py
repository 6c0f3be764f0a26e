"""WebSocket `/v1/ws`: many sessions per socket, run/cancel/message, ping; errors as frames.

A malformed, unknown or oversized frame (over `ws_max_frame_bytes`) gets an
`error` frame and the socket stays open. Frames beyond the server's hard cap
(4x that setting, uvicorn's `ws_max_size`) are refused by the WebSocket layer
itself, which closes with 1009 (message too big) before the app sees them.
Event frames are written like SSE's, through the connection's Output (gateway/output.py);
a lagged socket gets `{"op":"error","code":"lagged","cursors":{session: cursor}}`
and close code 1013 (try again later); a gateway shutdown closes with 1012.

Limits (SPEC "Limits"): a socket takes one of its token's stream slots
(gateway/slots.py; none left: an `error` frame `too_many_streams`, then 1008),
follows at most `max_subscriptions_per_socket` sessions, and sends at most
`ws_frames_per_s` frames (gateway/limits.py): frames over it are dropped with a
`rate_limited` error frame, and a flood of them closes the socket with 1008, as
does a revocation of its token (`token_revoked`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

import msgspec
import nats.errors
from starlette.responses import Response
from starlette.types import Receive, Send
from starlette.websockets import WebSocket

from agentcast.codec import ws_op_decoder, ws_ref_decoder
from agentcast.errors import AgentcastError, LimitExceeded, TooManyStreams
from agentcast.tokens import Claims, Scope
from agentcast.ws_ops import Cancel, ClientOp, Message, Ping, Ref, Run, Subscribe, Unsubscribe
from gateway.admission import ReplayBusy
from gateway.auth import checked_session
from gateway.deadline import nats_deadline
from gateway.errors import ApiError, from_agentcast_error, from_nats_error, unavailable
from gateway.feed import Subscription
from gateway.frames import error_body, ws_reply
from gateway.hub import Subscriber
from gateway.limits import FrameLimiter
from gateway.output import open_output
from gateway.params import NOW, parse_from, parse_types, replay_filter
from gateway.runs import cancel_run, check_prompt, follow_up, submit_run
from gateway.sink import Sink, hand_off
from gateway.slots import Slot
from gateway.state import GatewayState, state_of

logger = logging.getLogger(__name__)

HARD_CAP_FACTOR: Final = 4
_CLOSE_LAGGED: Final = 1013
_CLOSE_RESTART: Final = 1012
_CLOSE_POLICY: Final = 1008


async def endpoint(websocket: WebSocket) -> None:
    gw = state_of(websocket)
    try:
        claims = gw.auth.claims(websocket.headers, websocket.query_params)
    except ApiError as exc:
        await _deny(websocket, exc)
        return
    if gw.hub.closing:
        await websocket.close(_CLOSE_RESTART)
        return
    try:
        slot = await gw.slots.acquire(claims.jti)
    except TooManyStreams as exc:
        gw.stats.hit(exc.limit)
        await _refuse(websocket, from_agentcast_error(exc))
        return
    try:
        await websocket.accept()
        sink = Sink(
            open_output("ws", websocket.scope, websocket.send), gw.settings.client_buffer_bytes,
            gw.stats, gw.hub.flusher,
        )  # fmt: skip
        slot.stream = sink
        connection = _Connection(gw, claims, sink, slot)
        await hand_off(websocket.scope, websocket.receive, websocket.send, connection.run)
    except BaseException:
        slot.release()
        raise


async def _refuse(websocket: WebSocket, err: ApiError) -> None:
    """A socket past a limit before it starts: accepted only to say why in an `error` frame,
    then closed with 1008 (a browser never sees a refused handshake's body)."""
    await websocket.accept()
    await websocket.send_text(
        ws_reply("error", code=err.code, message=err.message, **err.extra).decode()
    )
    await websocket.close(_CLOSE_POLICY)


async def _deny(websocket: WebSocket, exc: ApiError) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        body = error_body(exc.code, exc.message)
        await websocket.send_denial_response(
            Response(body, exc.status, media_type="application/json")
        )
    else:
        await websocket.close(1008, exc.message[:120])


class _Connection:
    """An accepted socket: on the fast path after the hand-off, with the server's own receive
    and send (no Starlette); on the plain path inside Starlette's WebSocket."""

    def __init__(self, gw: GatewayState, claims: Claims, sink: Sink, slot: Slot) -> None:
        self.gw = gw
        self.claims = claims
        self.sink = sink
        self.slot = slot
        self.frames = FrameLimiter(gw.settings)
        self.subs: dict[str, Subscription] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.max_frame = gw.settings.ws_max_frame_bytes
        self.client: Subscriber | None = None

    async def run(self, receive: Receive, send: Send) -> None:
        try:
            async with self.gw.hub.connect(self.sink) as client:
                self.client = client
                try:
                    if self.sink.reason is None:
                        async with asyncio.TaskGroup() as group:
                            reader = group.create_task(self._read(receive))
                            await self.sink.wait()
                            reader.cancel()
                finally:
                    self.stop()
                await self.close(client, send)
        finally:
            self.slot.release()

    async def _read(self, receive: Receive) -> None:
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    break
                raw = message.get("text")
                data = raw.encode() if raw is not None else message.get("bytes") or b""
                if self.frames.admit():
                    await self._handle(data)
                elif not self._refuse_frame(data):
                    return
        except (OSError, RuntimeError) as exc:  # the socket went away under the server
            logger.debug("WebSocket receive: %r", exc)
        self.sink.finish("disconnected")

    def _refuse_frame(self, data: bytes) -> bool:
        """A frame over the socket's rate: an error frame for it, unread; False once the
        refusals in a row make it a flood (the socket then closes with 1008)."""
        self.gw.stats.hit("ws_frames_per_s")
        if self.frames.flooding:
            self.sink.finish("flood")
            return False
        rate = self.gw.settings.ws_frames_per_s
        self.reply(
            "error", code="rate_limited", message=f"over {rate:g} frames per second; frame dropped",
            id=_ref_of(data), retry_after_s=1,
        )  # fmt: skip
        return True

    def reply(self, op: str, **fields: Any) -> None:
        self.sink.send(ws_reply(op, **fields))

    async def _handle(self, data: bytes) -> None:
        try:
            if len(data) > self.max_frame:
                raise ApiError(
                    413, "frame_too_large", f"frame of {len(data)} bytes is over {self.max_frame}"
                )
            async with nats_deadline(self.gw.settings.nats_timeout_s):
                await self._dispatch(_decode(data))
        except (AgentcastError, nats.errors.Error) as exc:
            if isinstance(exc, LimitExceeded):
                self.gw.stats.hit(exc.limit)
            err = _api_error(exc)
            self.reply("error", code=err.code, message=err.message, id=_ref_of(data), **err.extra)
        except Exception:
            logger.exception("WebSocket frame failed")
            self.reply(
                "error",
                code="internal",
                message="the gateway could not handle this frame",
                id=_ref_of(data),
            )

    async def _dispatch(self, op: ClientOp) -> None:
        gw = self.gw
        match op:
            case Ping(id=ref):
                self.reply("pong", id=ref)
            case Subscribe(session=session, id=ref):
                await self._subscribe(self._session(session, "read"), op)
            case Unsubscribe(session=session, id=ref):
                self._unsubscribe(self._session(session, "read"), ref)
            case Run(prompt=prompt, session=given, options=options, id=ref):
                check_prompt(prompt, gw.settings)
                session = self._session(
                    given if given is not None else self.claims.new_session(), "run"
                )
                gw.run_limiter.check(self.claims.jti)
                run = await submit_run(
                    gw.js, gw.reader, gw.settings, prompt=prompt, session=session, options=options
                )
                self.reply("ack", **{"for": "run"}, session=session, run=run, id=ref)
            case Cancel(session=session, id=ref):
                session = self._session(session, "run")
                reply = await cancel_run(gw.nc, session)
                self.reply("ack", **{"for": "cancel"}, session=session, run=reply.run, id=ref)
            case Message(session=session, text=text, id=ref):
                session = self._session(session, "run")
                gw.run_limiter.check(self.claims.jti)
                run = await follow_up(
                    gw.nc, gw.js, gw.reader, gw.settings, session=session, text=text
                )
                self.reply("ack", **{"for": "message"}, session=session, run=run, id=ref)

    def _session(self, session: str, scope: Scope) -> str:
        return checked_session(self.gw.auth, self.claims, scope, session)

    async def _subscribe(self, session: str, op: Subscribe) -> None:
        if session in self.subs:
            raise ApiError(409, "already_subscribed", f"already subscribed to {session!r}")
        limit = self.gw.settings.max_subscriptions_per_socket
        if len(self.subs) >= limit:
            raise TooManyStreams(
                "max_subscriptions_per_socket",
                f"this socket already follows {limit} sessions; unsubscribe from one first",
            )
        after = parse_from(str(op.start))
        type_filter = parse_types(op.types)
        subject = replay_filter(session, type_filter)
        if after > 0:
            await self.gw.reader.check_resume(after, subject, session.__eq__)
        sub = Subscription(
            session, self.sink, subject, after=after, types=type_filter, sessions=None
        )
        self.reply("subscribed", session=session, id=op.id)
        self.subs[session] = sub
        await self._client().subscribe(session, sub)
        if after != NOW and self.subs.get(session) is sub:
            self.tasks[session] = asyncio.create_task(self._catch_up(sub))

    async def _catch_up(self, sub: Subscription) -> None:
        try:
            await self._client().catch_up(sub)
        except Exception as exc:  # noqa: BLE001 - reported to the client as a frame
            logger.warning("replay failed for %s: %r", sub.name, exc)
            if isinstance(exc, ReplayBusy):  # our own words: how long to wait, nothing inside
                self.reply("error", code=exc.code, message=str(exc), session=sub.name,
                           retry_after_s=exc.retry_after_s)  # fmt: skip
                self._drop(sub.name)
                return
            err = _api_error(exc) if isinstance(exc, AgentcastError | nats.errors.Error) else None
            err = err or unavailable("the replay could not be read")
            self.reply(
                "error", code=err.code, message=f"{err.message}; subscribe again from your cursor",
                session=sub.name, **err.extra,
            )  # fmt: skip
            self._drop(sub.name)

    def _unsubscribe(self, session: str, ref: object) -> None:
        if session not in self.subs:
            raise ApiError(404, "not_subscribed", f"not subscribed to {session!r}")
        self._drop(session)
        self.reply("ack", **{"for": "unsubscribe"}, session=session, id=ref)

    def _drop(self, session: str) -> None:
        sub = self.subs.pop(session, None)
        task = self.tasks.pop(session, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if sub is not None:
            self._client().unsubscribe(sub)

    def _client(self) -> Subscriber:
        if self.client is None:
            raise RuntimeError("frames are handled only while the socket is connected")
        return self.client

    def stop(self) -> None:
        self.sink.finish("disconnected")
        for task in self.tasks.values():
            task.cancel()

    async def close(self, client: Subscriber, send: Send) -> None:
        """Say why the socket ends (lagged: the cursors), then close with the matching code."""
        reason = self.sink.reason
        if reason == "disconnected":
            return
        code = _CLOSE_RESTART
        if reason == "revoked":
            self.reply("error", code="token_revoked", message="token revoked")
            code = _CLOSE_POLICY
        elif reason == "flood":
            self.reply("error", code="rate_limited", message="frame flood: socket closed")
            code = _CLOSE_POLICY
        elif reason == "lagged":
            self.reply(
                "error",
                code="lagged",
                message="client fell behind; resubscribe from these cursors",
                cursors=client.cursors(),
            )
            code = _CLOSE_LAGGED
        await self.sink.output.end(send, {"type": "websocket.close", "code": code})


# Which field a frame got wrong decides the error code the client gets.
_FIELD_CODES: Final = {"$.session": "invalid_session", "$.from": "invalid_cursor",
                       "$.types": "invalid_types", "$.op": "unknown_op"}  # fmt: skip


def _decode(data: bytes) -> ClientOp:
    try:
        op: ClientOp = ws_op_decoder.decode(data)
    except msgspec.ValidationError as exc:  # JSON, but not a client frame
        text = str(exc)
        code = "bad_frame"
        for path, field_code in _FIELD_CODES.items():
            if text.endswith(f"`{path}`") or f"`{path}[" in text:
                code = field_code
        if text == "Object missing required field `session`":
            code = "invalid_session"
        raise ApiError(400, code, text) from exc
    except msgspec.DecodeError as exc:
        raise ApiError(400, "bad_frame", f"not JSON: {exc}") from exc
    return op


def _api_error(exc: AgentcastError | nats.errors.Error) -> ApiError:
    if isinstance(exc, AgentcastError):
        return from_agentcast_error(exc)
    return from_nats_error(exc)


def _ref_of(data: bytes) -> Ref:
    try:
        ref: Ref = ws_ref_decoder.decode(data).id
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return ref
