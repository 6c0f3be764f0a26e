"""The web dashboard: `GET /` and its static assets under `/dashboard/`, no build step;
and the browser client module at `/static/agentcast.js`, which the dashboard uses too.

The files live in gateway/dashboard/ (package data). The page takes its token
from its own URL (`/?token=...`) and sends it with every API call; the assets
themselves need none, so the page loads before it knows whether the token is
good and can say so.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Final

from fastapi import APIRouter
from starlette.responses import HTMLResponse, Response

from gateway.errors import ApiError
from gateway.openapi import answers

router = APIRouter(tags=["dashboard"])

_ASSETS: Final = files("gateway") / "dashboard"
_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_HEADERS: Final = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Everything the page renders comes from the same origin; event data is inserted as text.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
}


def _asset(name: str) -> Response:
    suffix = name[name.rfind(".") :] if "." in name else ""
    resource = _ASSETS / name
    if suffix not in _TYPES or "/" in name or name.startswith(".") or not resource.is_file():
        raise ApiError(404, "not_found", f"no dashboard asset {name[:80]!r}")
    return Response(resource.read_bytes(), media_type=_TYPES[suffix], headers=_HEADERS)


@router.get(
    "/",
    summary="The dashboard (open it with ?token=...)",
    response_class=HTMLResponse,
    responses=answers(),
)
async def index() -> Response:
    return _asset("index.html")


@router.get(
    "/static/agentcast.js",
    summary="The browser client (an ES module: streams that resume, runs, cancel, messages)",
    response_class=Response,
    responses=answers(
        ok={200: {"content": {"text/javascript": {}}, "description": "the ES module"}}
    ),
)
async def client_module() -> Response:
    response = _asset("agentcast.js")
    # A public module other origins may import (their API calls still need the gateway's CORS).
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@router.get("/dashboard/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    return _asset(name)
