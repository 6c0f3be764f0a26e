"""The HTTP face of the scripted model: a small Starlette app speaking the Messages API."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .conversation import Conversation, read_conversation
from .pacing import Pacing
from .scenario import ApiError, Scenario, Turn
from .select import fill_placeholders, plan_turn, prompt_speed, select_scenario
from .sidecalls import is_side_call, side_turn
from .stream import Usage, encode_sse, estimate_tokens, message_body, turn_events

__all__ = ["build_app"]

logger = logging.getLogger(__name__)

# Small models answer side calls (titles, summaries) fast.
_SIDE_CALL_TPS = 200.0


@dataclass(slots=True)
class _State:
    scenarios: Mapping[str, Scenario]
    pacing: Pacing
    rng: random.Random
    # The last request bodies, oldest dropped first: tests inspect them.
    requests: deque[dict[str, Any]]


def _error(status: int, kind: str, message: str, rng: random.Random) -> JSONResponse:
    request_id = "req_01" + "".join(rng.choices("abcdefghijkmnopqrstuvwxyz0123456789", k=22))
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    return JSONResponse(body, status_code=status, headers={"request-id": request_id})


def _usage(conv: Conversation) -> Usage:
    # Claude Code marks its system prompt and tools for caching: the first
    # request of a conversation writes that cache, later ones read it.
    prefix = estimate_tokens(conv.prefix_chars)
    fresh = conv.turn == 0 and conv.prompt == conv.first_prompt
    return Usage(
        input_tokens=estimate_tokens(conv.suffix_chars),
        cache_creation_input_tokens=prefix if fresh else 0,
        cache_read_input_tokens=0 if fresh else prefix,
    )


async def _paced(
    turn: Turn, conv: Conversation, tokens_per_second: float, pacing: Pacing, rng: random.Random
) -> AsyncIterator[bytes]:
    events = turn_events(turn, model=conv.model, usage=_usage(conv), rng=rng)
    if wait := pacing.first_token(rng):
        await asyncio.sleep(wait)
    for event in events:
        if wait := pacing.before(event, tokens_per_second, rng):
            await asyncio.sleep(wait)
        yield encode_sse(event)


async def _read_json(request: Request, state: _State) -> dict[str, Any] | JSONResponse:
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return _error(400, "invalid_request_error", f"body is not JSON: {exc}", state.rng)
    if not isinstance(body, dict):
        return _error(400, "invalid_request_error", "body must be a JSON object", state.rng)
    return body


async def _messages(request: Request) -> Response:
    state: _State = request.app.state.scripted
    body = await _read_json(request, state)
    if isinstance(body, JSONResponse):
        return body
    state.requests.append(body)
    conv = read_conversation(body)
    if is_side_call(body, conv):
        name, turn = "(side call)", side_turn(body, conv)
        tokens_per_second = _SIDE_CALL_TPS
    else:
        scenario = select_scenario(state.scenarios, conv.prompt)
        name, turn = scenario.name, fill_placeholders(plan_turn(scenario, conv), conv)
        tokens_per_second = turn.tokens_per_second or scenario.tokens_per_second
    logger.info("%s: turn %d of %s, stream=%s", conv.model, conv.turn, name, conv.stream)
    speed = prompt_speed(conv.prompt)
    pacing = state.pacing if speed is None else dataclasses.replace(state.pacing, speed=speed)
    if turn.error is not None:
        return await _api_error(turn.error, pacing, state.rng)
    if conv.stream:
        stream = _paced(turn, conv, tokens_per_second, pacing, state.rng)
        headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        return StreamingResponse(stream, media_type="text/event-stream", headers=headers)
    return JSONResponse(message_body(turn, model=conv.model, usage=_usage(conv), rng=state.rng))


async def _api_error(error: ApiError, pacing: Pacing, rng: random.Random) -> Response:
    if wait := pacing.first_token(rng):
        await asyncio.sleep(wait)
    return _error(error.status, error.type, error.message, rng)


async def _count_tokens(request: Request) -> Response:
    state: _State = request.app.state.scripted
    body = await _read_json(request, state)
    if isinstance(body, JSONResponse):
        return body
    conv = read_conversation(body)
    return JSONResponse({"input_tokens": estimate_tokens(conv.prefix_chars + conv.suffix_chars)})


async def _models(request: Request) -> Response:
    model_id = request.path_params.get("model_id", "claude-scripted")
    model = {
        "type": "model",
        "id": model_id,
        "display_name": model_id,
        "created_at": "2025-01-01T00:00:00Z",
    }
    if "model_id" in request.path_params:
        return JSONResponse(model)
    return JSONResponse(
        {"data": [model], "has_more": False, "first_id": model_id, "last_id": model_id}
    )


async def _hello(request: Request) -> Response:
    # Claude Code sends HEAD /api/hello at startup to warm the connection.
    return Response(status_code=200)


async def _recorded(request: Request) -> Response:
    state: _State = request.app.state.scripted
    return JSONResponse(list(state.requests))


async def _health(request: Request) -> Response:
    state: _State = request.app.state.scripted
    return JSONResponse(
        {"status": "ok", "scenarios": sorted(state.scenarios), "speed": state.pacing.speed}
    )


async def _not_found(request: Request, exc: Exception) -> Response:
    state: _State = request.app.state.scripted
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    kind = "not_found_error" if status == 404 else "invalid_request_error"
    return _error(
        status, kind, f"{request.method} {request.url.path} is not served here", state.rng
    )


def build_app(
    scenarios: Mapping[str, Scenario],
    speed: float = 1.0,
    *,
    seed: int | None = None,
    history: int = 500,
) -> Starlette:
    """A Messages API app playing `scenarios`.

    `speed` multiplies every delay (0: none, 1.0: realistic, 2.0: twice as
    slow); `seed` makes ids and jitter reproducible; `history` bounds how many
    request bodies `GET /_scripted/requests` keeps (the oldest are dropped).
    """
    if not scenarios:
        raise ValueError("at least one scenario is needed")
    if history < 0:
        raise ValueError("history must be >= 0")
    routes = [
        Route("/v1/messages", _messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", _count_tokens, methods=["POST"]),
        Route("/v1/models", _models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", _models, methods=["GET"]),
        Route("/api/hello", _hello, methods=["GET", "HEAD"]),
        Route("/_scripted/requests", _recorded, methods=["GET"]),
        Route("/_scripted/health", _health, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_found})
    state = _State(dict(scenarios), Pacing(speed=speed), random.Random(seed), deque(maxlen=history))
    app.state.scripted = state
    return app
