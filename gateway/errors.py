"""HTTP errors: one exception carrying status and code, and the handlers that render it.

Every error, FastAPI's request validation and Starlette's 404/405 included, is
`{"error": {"code": ..., "message": ...}}`; bad input never reaches a 500.
Contract errors (bad session id, cursor, policy, token) are 4xx; a limit
(agentcast LimitExceeded) is its 429 or 503 with `Retry-After`; NATS or
JetStream not answering (agentcast NatsUnavailable, nats-py's timeouts and
connection errors) is 503 `nats_unavailable` with `Retry-After`; any other
agentcast error is a 500 `internal`. The whole tree is drawn in agentcast/errors.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

import nats.errors
import nats.js.errors
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from agentcast.errors import (
    AgentcastError,
    InvalidCursor,
    InvalidSessionId,
    InvalidSubject,
    LimitExceeded,
    NatsUnavailable,
    PolicyViolation,
)
from agentcast.tokens import TokenError
from gateway.frames import error_body

logger = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


class ApiError(AgentcastError):
    """An error answered to the client with `status` and a JSON body."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


_NOSNIFF: Final = {"X-Content-Type-Options": "nosniff"}
"""On every error too: a browser must not read a JSON error as anything else."""


def json_error(status: int, code: str, message: str, **extra: Any) -> Response:
    return Response(
        error_body(code, message, **extra), status_code=status, headers=_NOSNIFF,
        media_type="application/json",
    )  # fmt: skip


_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed(request: Request) -> str:
    """Every method some route takes at this path. Starlette's 405 names only the methods of
    the first route that matched the path, and a path may have one route per method."""
    routes = request.app.router.routes
    return ", ".join(
        m for m in _METHODS
        if any(r.matches({**request.scope, "method": m})[0] is Match.FULL for r in routes)
    )  # fmt: skip


_CLIENT_ERRORS: tuple[tuple[type[AgentcastError], int], ...] = (
    (InvalidSessionId, 400),
    (InvalidSubject, 400),
    (InvalidCursor, 400),
    (PolicyViolation, 400),
    (TokenError, 401),
)


def from_agentcast_error(exc: AgentcastError) -> ApiError:
    """An agentcast error as the answer the client gets (see the module docstring)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, NatsUnavailable):
        logger.warning(
            "%s: %s", type(exc).__name__, exc
        )  # the detail is JetStream's, not the client's
        return unavailable("NATS or JetStream did not answer in time; retry shortly")
    if isinstance(exc, LimitExceeded):
        return ApiError(exc.status, exc.code, str(exc), retry_after_s=exc.retry_after_s)
    for kind, status in _CLIENT_ERRORS:
        if isinstance(exc, kind):
            return ApiError(status, exc.code, str(exc))
    logger.error("unexpected %s: %s", type(exc).__name__, exc)
    return ApiError(500, "internal", "the gateway could not complete the request")


def from_nats_error(exc: nats.errors.Error) -> ApiError:
    """nats-py's errors: not answering in time or not connected is 503, anything else 500."""
    if isinstance(exc, nats.js.errors.APIError) and not isinstance(
        exc, nats.js.errors.ServiceUnavailableError
    ):
        logger.error("unexpected JetStream answer: %r", exc)
        return ApiError(500, "internal", "the gateway could not complete the request")
    return unavailable(f"NATS did not answer: {type(exc).__name__}")


def unavailable(message: str) -> ApiError:
    return ApiError(503, NatsUnavailable.code, message, retry_after_s=NatsUnavailable.retry_after_s)


def _headers(err: ApiError) -> dict[str, str]:
    if err.status == 401:
        return {"WWW-Authenticate": "Bearer"}
    if err.status in (429, 503):
        return {"Retry-After": str(err.extra.get("retry_after_s", NatsUnavailable.retry_after_s))}
    return {}


def error_response(err: ApiError) -> Response:
    """`err` as its JSON response, with its headers (Retry-After, WWW-Authenticate)."""
    response = json_error(err.status, err.code, err.message, **err.extra)
    response.headers.update(_headers(err))
    return response


def install(app: FastAPI, on_limit: Callable[[Request, str], None]) -> None:
    """Render every error the API can raise in the one JSON shape; `on_limit(request, setting)`
    counts each limit hit."""
    _render = error_response

    async def _api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AgentcastError)
        if isinstance(exc, LimitExceeded):
            on_limit(request, exc.limit)
        return _render(from_agentcast_error(exc))

    async def _nats_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, nats.errors.Error)
        return _render(from_nats_error(exc))

    async def _validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
        return json_error(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")

    async def _http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code
        response = json_error(exc.status_code, code, message)
        # Starlette's 405 carries `Allow` (RFC 9110: a 405 must list the methods).
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            response.headers["Allow"] = allowed(request)
        return response

    app.add_exception_handler(AgentcastError, _api_error)
    app.add_exception_handler(nats.errors.Error, _nats_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
