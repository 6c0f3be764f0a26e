"""Control and query routes: start runs, cancel, follow up, read progress snapshots."""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec
from fastapi import APIRouter, Query, Request
from nats.js.errors import KeyNotFoundError
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, Response

from agentcast.codec import encode
from agentcast.progress import ProgressSnapshot, decode_snapshot
from agentcast.tokens import Claims
from gateway.auth import checked_session
from gateway.deadline import nats_deadline
from gateway.deps import ReadClaims, RunClaims
from gateway.errors import ApiError
from gateway.openapi import (
    CONTROL,
    READ,
    SUBMIT,
    ControlAnswer,
    RunAccepted,
    SessionPath,
    StateQuery,
    answers,
    snapshots,
)
from gateway.params import parse_state
from gateway.runs import cancel_run, check_prompt, follow_up, submit_run
from gateway.state import GatewayState, state_of

router = APIRouter(tags=["control"])

_MAX_LIST: Final = 1000
_BODY_SLACK: Final = 64 * 1024


class RunBody(BaseModel):
    prompt: Any = Field(description="the prompt")
    session: Any = Field(None, description="a session id; the server makes one when absent")
    options: Any = Field(None, description="model, max_turns, allowed_tools (bounded by policy)")


class MessageBody(BaseModel):
    text: Any = Field(description="the follow-up message")


def _gateway(request: Request) -> GatewayState:
    gw = state_of(request)
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > gw.settings.max_prompt_bytes + _BODY_SLACK:
        raise ApiError(
            413,
            "too_large",
            f"request body over {gw.settings.max_prompt_bytes + _BODY_SLACK} bytes",
        )
    return gw


@router.post(
    "/v1/runs",
    status_code=202,
    summary="Queue a run (scope: run)",
    responses=answers(*SUBMIT, ok={202: {"model": RunAccepted}}),
)
async def start_run(request: Request, body: RunBody, claims: RunClaims) -> JSONResponse:
    gw = _gateway(request)
    check_prompt(body.prompt, gw.settings)
    if body.session is not None and not isinstance(body.session, str):
        raise ApiError(400, "invalid_session", "session must be a string")
    # Absent or null: the server makes one (inside the token's glob); "" is invalid, a 400.
    given = claims.new_session() if body.session is None else body.session
    session = checked_session(gw.auth, claims, "run", given)
    gw.run_limiter.check(claims.jti)
    async with nats_deadline(gw.settings.nats_timeout_s):
        run = await submit_run(
            gw.js, gw.reader, gw.settings, prompt=body.prompt, session=session,
            options=body.options,
        )  # fmt: skip
    base = str(request.base_url).rstrip("/")
    ws_base = "ws" + base[len("http") :] if base.startswith("http") else base
    payload = {
        "session": session,
        "run": run,
        "events_url": f"{base}/v1/sessions/{session}/events",
        "ws_url": f"{ws_base}/v1/ws",
    }
    return JSONResponse(payload, status_code=202)


@router.post(
    "/v1/sessions/{session}/cancel",
    summary="Cancel the session's run (scope: run)",
    response_model=ControlAnswer,
    responses=answers(*CONTROL),
)
async def cancel(request: Request, session: SessionPath, claims: RunClaims) -> dict[str, Any]:
    gw = _gateway(request)
    checked_session(gw.auth, claims, "run", session)
    async with nats_deadline(gw.settings.nats_timeout_s):
        reply = await cancel_run(gw.nc, session)
    return {"session": session, "ok": reply.ok, "run": reply.run}


@router.post(
    "/v1/sessions/{session}/messages",
    summary="Send a follow-up message (scope: run)",
    response_model=ControlAnswer,
    responses=answers(*CONTROL, 404, 429),
)
async def message(
    request: Request, session: SessionPath, body: MessageBody, claims: RunClaims
) -> dict[str, Any]:
    gw = _gateway(request)
    checked_session(gw.auth, claims, "run", session)
    gw.run_limiter.check(claims.jti)
    async with nats_deadline(gw.settings.nats_timeout_s):
        run = await follow_up(gw.nc, gw.js, gw.reader, gw.settings, session=session, text=body.text)
    return {"session": session, "ok": True, "run": run}


@router.get(
    "/v1/sessions",
    summary="Progress snapshots of sessions (scope: read)",
    responses=answers(*READ, ok=snapshots(many=True)),
)
async def list_sessions(
    request: Request,
    claims: ReadClaims,
    state: StateQuery = None,
    limit: Annotated[int, Query(ge=1, le=_MAX_LIST)] = 100,
) -> Response:
    gw = _gateway(request)
    state = parse_state(state)
    async with nats_deadline(gw.settings.nats_timeout_s):
        found = await _snapshots(gw, claims, state)
    found.sort(key=lambda s: s.updated_at, reverse=True)
    return _json({"sessions": found[:limit]})


@router.get(
    "/v1/sessions/{session}",
    summary="Progress snapshot of one session (scope: read)",
    responses=answers(*READ, 404, ok=snapshots(many=False)),
)
async def get_session(request: Request, session: SessionPath, claims: ReadClaims) -> Response:
    gw = _gateway(request)
    checked_session(gw.auth, claims, "read", session)
    try:
        async with nats_deadline(gw.settings.nats_timeout_s):
            entry = await gw.kv.get(session)
    except KeyNotFoundError:
        entry = None
    snapshot = _decode(entry.value) if entry is not None and entry.value else None
    if snapshot is None:
        raise ApiError(404, "not_found", f"no session {session!r}")
    return _json(snapshot)


async def _snapshots(gw: GatewayState, claims: Claims, state: str | None) -> list[ProgressSnapshot]:
    """One pass over the latest value of every key (an ordered consumer, deletes skipped)."""
    snapshots: list[ProgressSnapshot] = []
    watcher = await gw.kv.watchall(ignore_deletes=True)
    try:
        async for entry in watcher:
            if entry is None:
                break
            if not claims.allows_session(entry.key) or entry.value is None:
                continue
            snapshot = _decode(entry.value)
            if snapshot is not None and (state is None or snapshot.state == state):
                snapshots.append(snapshot)
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    return snapshots


def _decode(raw: bytes) -> ProgressSnapshot | None:
    try:
        return decode_snapshot(raw)
    except msgspec.DecodeError:  # not a snapshot (ValidationError included): skipped
        return None


def _json(value: object) -> Response:
    return Response(encode(value), media_type="application/json")
