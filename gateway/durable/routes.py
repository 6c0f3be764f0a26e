"""Durable Streams routes: sessions at /ds/v1/sessions/{session} (read only), application
streams at /ds/v1/stream/{name} (create, append, delete, read).

Reads need scope `read`, writes `run` (or `admin`); the token's session glob
bounds app stream names too. A session always exists (it reads empty until
its first event); an app stream exists from its PUT until its DELETE.
"""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from agentcast.sessions import validate_session_id
from agentcast.tokens import Claims, Scope
from gateway.auth import checked_session
from gateway.deps import ReadClaims, RunClaims, State
from gateway.durable import schema
from gateway.durable.appstreams import AppStreams
from gateway.durable.offsets import format_offset
from gateway.durable.producers import Refusal, producer_of
from gateway.durable.read import SECURITY_HEADERS, read, tail
from gateway.durable.schema import StreamNamePath
from gateway.durable.source import Source, session_source
from gateway.durable.wire import media_type
from gateway.errors import ApiError, json_error
from gateway.openapi import SessionPath
from gateway.state import GatewayState

router = APIRouter(tags=["durable streams"])

EXPOSED_HEADERS: Final = (
    "Stream-Next-Offset", "Stream-Cursor", "Stream-Up-To-Date", "Stream-Closed", "ETag",
    "Location", "Stream-SSE-Data-Encoding",
)  # fmt: skip
"""Response headers a browser client must be able to read (CORS `expose_headers`)."""

SESSIONS: Final = "/ds/v1/sessions/{session}"
APPS: Final = "/ds/v1/stream/{name}"

_SESSION_GET, _SESSION_HEAD = schema.read_route(
    "Read a session as a Durable Stream (JSON mode)", app=False
)
_APP_GET, _APP_HEAD = schema.read_route("Read an application stream", app=True)


# GET and HEAD as two routes: one route with both methods gives both one operation id.
@router.get(SESSIONS, **_SESSION_GET)
@router.head(SESSIONS, **_SESSION_HEAD)
async def session_stream(
    gw: State, session: SessionPath, claims: ReadClaims, request: Request
) -> Response:
    checked_session(gw.auth, claims, "read", session)
    return await read(gw, session_source(gw.hub, session), request, claims.jti)


@router.get(APPS, **_APP_GET)
@router.head(APPS, **_APP_HEAD)
async def app_read(
    gw: State, name: StreamNamePath, claims: ReadClaims, request: Request
) -> Response:
    return await read(gw, await _existing(gw, claims, "read", name), request, claims.jti)


@router.put(APPS, status_code=201, **schema.CREATE)
async def app_create(
    gw: State, name: StreamNamePath, claims: RunClaims, request: Request
) -> Response:
    _checked_name(gw, claims, "run", name)
    _supported(request)
    media = media_type(request.headers.get("content-type"))
    close = _closing(request)
    try:
        created, source = await _streams(gw).create(
            name, media, await _body(gw, request), request.headers.get("stream-seq"),
            close=close, producer=producer_of(request.headers),
        )  # fmt: skip
    except Refusal as exc:
        return _refused(exc)
    headers = {**SECURITY_HEADERS, "Content-Type": source.media,
               "Stream-Next-Offset": format_offset(await tail(source))}  # fmt: skip
    if created:
        headers["Location"] = str(request.url.replace(query=""))
    if close:
        headers["Stream-Closed"] = "true"
    return Response(status_code=201 if created else 200, headers=headers)


@router.post(APPS, status_code=204, **schema.APPEND)
async def app_append(
    gw: State, name: StreamNamePath, claims: RunClaims, request: Request
) -> Response:
    source = await _existing(gw, claims, "run", name)
    _supported(request)
    close = _closing(request)
    content = await _body(gw, request)
    if "content-type" not in request.headers and not (close and not content):
        raise ApiError(400, "invalid_content_type", "an append needs a Content-Type")
    media = media_type(request.headers.get("content-type"))
    producer = producer_of(request.headers)
    try:
        done = await _streams(gw).append(
            source, media, content, request.headers.get("stream-seq"), close=close,
            producer=producer,
        )  # fmt: skip
    except Refusal as exc:
        return _refused(exc)
    headers = {**SECURITY_HEADERS, "Stream-Next-Offset": format_offset(await tail(source)),
               **(done.producer or {})}  # fmt: skip
    if close:
        headers["Stream-Closed"] = "true"
    # A producer's stored append is 200 (with its headers); its duplicate, or a close
    # without data, is 204, as the protocol says.
    status = 200 if producer is not None and not done.duplicate and content else 204
    return Response(status_code=status, headers=headers)


@router.delete(APPS, status_code=204, **schema.DELETE)
async def app_delete(gw: State, name: StreamNamePath, claims: RunClaims) -> Response:
    _checked_name(gw, claims, "run", name)
    if not await _streams(gw).delete(name):
        raise ApiError(404, "not_found", f"no stream {name!r}")
    return Response(status_code=204, headers=SECURITY_HEADERS)


_UNSUPPORTED: Final = ("stream-ttl", "stream-expires-at", "stream-forked-from")
"""Protocol features the facade does not implement: refused, never silently ignored
(expiry follows the stream's retention; no forks)."""


def _closing(request: Request) -> bool:
    return request.headers.get("stream-closed", "").strip().lower() == "true"


def _refused(exc: Refusal) -> Response:
    """A refused append (closed stream, fenced producer, gap), with the headers a writer
    acts on."""
    response = json_error(exc.status, exc.code, exc.message)
    response.headers.update({**SECURITY_HEADERS, **exc.headers})
    return response


def _supported(request: Request) -> None:
    for header in _UNSUPPORTED:
        if header in request.headers:
            raise ApiError(400, "unsupported", f"{header} is not supported by agentcast")


def _streams(gw: GatewayState) -> AppStreams:
    if gw.app_streams is None:
        raise ApiError(503, "not_ready", "application streams are not open yet")
    return gw.app_streams


def _checked_name(gw: GatewayState, claims: Claims, scope: Scope, name: str) -> None:
    try:
        validate_session_id(name)
    except ValueError as exc:
        raise ApiError(400, "invalid_stream", str(exc)) from exc
    gw.auth.authorize(claims, scope, name)


async def _existing(gw: GatewayState, claims: Claims, scope: Scope, name: str) -> Source:
    _checked_name(gw, claims, scope, name)
    source = await _streams(gw).lookup(name)
    if source is None:
        raise ApiError(404, "not_found", f"no stream {name!r}")
    return source


async def _body(gw: GatewayState, request: Request) -> bytes:
    limit = gw.settings.max_msg_size
    content = bytearray()
    async for chunk in request.stream():
        content += chunk
        if len(content) > limit:  # one stored message: JetStream's limit too
            raise ApiError(413, "payload_too_large", f"a body is at most {limit} bytes")
    return bytes(content)
