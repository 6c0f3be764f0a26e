"""HTTP errors: one exception carrying status and code, and the handlers that render it.

Every 4xx, FastAPI's request validation and Starlette's 404/405 included, is
`{"error": {"code": ..., "message": ...}}`; bad input never reaches a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from agentcast.errors import AgentcastError
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
}


class ApiError(AgentcastError):
    """An error answered to the client with `status` and a JSON body."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def json_error(status: int, code: str, message: str, **extra: Any) -> Response:
    return Response(
        error_body(code, message, **extra), status_code=status, media_type="application/json"
    )


def from_agentcast_error(exc: AgentcastError) -> ApiError:
    """A contract error (invalid session id, cursor, policy...) as a 400."""
    if isinstance(exc, ApiError):
        return exc
    return ApiError(400, exc.code, str(exc))


def install(app: FastAPI) -> None:
    """Render every error the API can raise in the one JSON shape."""

    async def _api_error(request: Request, exc: Exception) -> Response:
        err = from_agentcast_error(exc)  # type: ignore[arg-type]
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
        response = json_error(err.status, err.code, err.message, **err.extra)
        if headers:
            response.headers.update(headers)
        return response

    async def _validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
        return json_error(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")

    async def _http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code
        return json_error(exc.status_code, code, message)

    app.add_exception_handler(AgentcastError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
