"""The auth matrix over HTTP: every route x every kind of credential (tests/support/auth_matrix.py).

Credentials: none, garbage, expired, wrong signature, alg none, wrong scope,
a session outside the token's glob, and the right token, each as a Bearer
header and as `?token=`. Exactly the right one passes; the first five get 401
`unauthorized`, the last two 403 `forbidden`, always as the JSON error.
Listings (`/v1/sessions`, the `/v1/events` firehose, `/v1/progress`) and error
messages carry nothing outside the token's glob. WebSocket ops: test_auth_matrix_ws.py.

The route list comes from the app itself: a route with neither a ROUTES entry
nor a place in PUBLIC fails `test_every_route_is_in_the_matrix`. A new route
declares what it needs there: `Need(scope, ...)`, or PUBLIC when it needs no token.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any, Final

import httpx
import msgspec
import pytest

from agentcast.settings import Settings
from agentcast.tokens import verify_token
from gateway.app import create_app
from tests.support import auth_matrix
from tests.support.auth_matrix import (
    CREDENTIALS,
    GLOB,
    MARKER,
    MINE,
    NEVER,
    OTHERS,
    PREFIX,
    UNAUTHENTICATED,
    Need,
    credential,
    leaked,
)
from tests.support.gateway import SECRET, GatewayProcess

matrix_gateway = auth_matrix.matrix_gateway  # the module-scoped fixture

ROUTES: Final[dict[tuple[str, str], Need]] = {
    ("POST", "/v1/runs"): Need("run", body={"prompt": "hi", "session": MINE}, ok=frozenset({202})),
    ("POST", "/v1/sessions/{session}/cancel"): Need("run", ok=frozenset({409})),
    ("POST", "/v1/sessions/{session}/messages"): Need("run", body={"text": "and then?"}),
    ("GET", "/v1/sessions"): Need("read", bound=False),
    ("GET", "/v1/sessions/{session}"): Need("read"),
    ("GET", "/v1/sessions/{session}/events"): Need("read", stream=True),
    # 204: the seeded session has no run going (its runs are over)
    ("GET", "/v1/sessions/{session}/stream"): Need("read", ok=frozenset({200, 204}), stream=True),
    ("GET", "/v1/events"): Need("read", params={"sessions": MINE}, stream=True),
    ("GET", "/v1/progress"): Need("read", bound=False, stream=True),
    # Durable Streams: the session read, and app stream APP (made by the fixture, JSON mode)
    ("GET", "/ds/v1/sessions/{session}"): Need("read"),
    ("GET", "/ds/v1/stream/{name}"): Need("read"),
    # 200: it exists with this content type (the body is not stored again)
    ("PUT", "/ds/v1/stream/{name}"): Need("run", body={"n": 0}),
    ("POST", "/ds/v1/stream/{name}"): Need("run", body={"n": 1}, ok=frozenset({204})),
    # 404: a stream never made, so that APP stays for the other routes
    ("DELETE", "/ds/v1/stream/{name}"): Need("run", name=NEVER, ok=frozenset({404})),
}
PUBLIC: Final = frozenset(
    {("GET", p) for p in ("/healthz", "/readyz", "/metrics", "/", "/static/agentcast.js",
                          "/dashboard/{name}", "/openapi.json", "/docs", "/docs/oauth2-redirect",
                          "/redoc")}
)  # fmt: skip
"""Routes that need no token: operations, the dashboard's files, the API docs."""


@pytest.fixture
async def client(matrix_gateway: GatewayProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=matrix_gateway.url, timeout=30) as http:
        yield http


def _app_routes() -> set[tuple[str, str]]:
    app = create_app(
        Settings.load({"nats_url": "nats://unused:4222", "jwt_secret": SECRET}, environ={})
    )
    return _routes_of(app.routes, "")


def _routes_of(routes: list[Any], prefix: str) -> set[tuple[str, str]]:
    """(method, path) of every route, into included routers (FastAPI keeps them nested)."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        context = getattr(route, "include_context", None)
        if context is not None:
            found |= _routes_of(context.included_router.routes, prefix + context.prefix)
            continue
        methods = getattr(route, "methods", None) or {"WEBSOCKET"}
        found |= {(m, prefix + route.path) for m in methods if m != "HEAD"}
    return found


def test_every_route_is_in_the_matrix() -> None:
    routes = _app_routes()
    http = routes - {("WEBSOCKET", "/v1/ws")}
    missing = sorted(http - set(ROUTES) - PUBLIC)
    assert not missing, f"routes without an auth matrix entry (ROUTES or PUBLIC): {missing}"
    stale = sorted((set(ROUTES) | PUBLIC) - http)
    assert not stale, f"matrix entries for routes that do not exist: {stale}"


async def _call(
    http: httpx.AsyncClient, method: str, path: str, need: Need, token: str | None, via: str
) -> tuple[int, httpx.Headers, str]:
    headers = {"Authorization": f"Bearer {token}"} if token and via == "header" else {}
    params = {**need.params, **({"token": token} if token and via == "query" else {})}
    url = path.replace("{session}", MINE).replace("{name}", need.name)
    async with http.stream(method, url, params=params, json=need.body, headers=headers) as r:
        body = "" if r.status_code == 200 and need.stream else (await r.aread()).decode()
        return r.status_code, r.headers, body


def _expected(kind: str, need: Need) -> int | None:
    """The status `kind` gets: 401, 403, or None for "passes" (one of need.ok)."""
    if kind in UNAUTHENTICATED:
        return 401
    if kind == "wrong_scope" or (kind == "outside_glob" and need.bound):
        return 403
    return None


@pytest.mark.parametrize("via", ["header", "query"])
@pytest.mark.parametrize(("method", "path"), sorted(ROUTES))
async def test_only_the_right_token_passes(
    client: httpx.AsyncClient, method: str, path: str, via: str
) -> None:
    """`via`: the token as `Authorization: Bearer`, or as `?token=` (EventSource's way)."""
    need = ROUTES[(method, path)]
    wrong = []
    for kind in CREDENTIALS:
        token = credential(kind, need.scope)
        status, headers, body = await _call(client, method, path, need, token, via)
        expected = _expected(kind, need)
        if expected is None:
            if status not in need.ok:
                wrong.append(f"{kind}: {status} {body[:200]}, expected {sorted(need.ok)}")
            continue
        if status != expected:
            wrong.append(f"{kind}: {status} {body[:200]}, expected {expected}")
            continue
        error = json.loads(body)["error"]
        code = "unauthorized" if expected == 401 else "forbidden"
        if error["code"] != code or not error["message"]:
            wrong.append(f"{kind}: error {error}, expected code {code}")
        if headers["content-type"] != "application/json":
            wrong.append(f"{kind}: content-type {headers['content-type']}")
        if expected == 401 and headers.get("www-authenticate") != "Bearer":
            wrong.append(f"{kind}: 401 without WWW-Authenticate: Bearer")
        if found := leaked(body, token):
            wrong.append(f"{kind}: the error shows {found}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(("method", "path"), sorted(PUBLIC))
async def test_public_routes_need_no_token_and_show_no_session(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path.replace("{name}", "app.js"))
    assert response.status_code in (200, 404), response.text[:300]
    assert not leaked(response.text, None) and MINE not in response.text


async def test_the_session_listing_shows_only_the_tokens_glob(client: httpx.AsyncClient) -> None:
    for kind, visible in (("right", {MINE}), ("outside_glob", set(OTHERS))):
        token = credential(kind, "read")
        response = await client.get("/v1/sessions", headers={"Authorization": f"Bearer {token}"})
        shown = {s["session"] for s in response.json()["sessions"]}
        assert {s for s in shown if s.startswith(PREFIX)} == visible, (kind, shown)


async def _sse(client: httpx.AsyncClient, path: str, token: str, until: str) -> list[Any]:
    """The `data` of each SSE message up to the first whose text contains `until`."""
    seen = []
    async with client.stream("GET", path, params={"token": token}) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                seen.append(json.loads(line[5:]))
                if until in line:
                    return seen
    raise AssertionError(f"the stream ended before {until!r}: {seen}")


async def test_the_firehose_and_progress_show_only_the_tokens_glob(
    client: httpx.AsyncClient,
) -> None:
    token = credential("right", "read")
    assert token is not None
    events = await _sse(client, "/v1/events?from=start", token, MARKER)
    sessions = {e["session"] for e in events}
    assert sessions == {MINE, MARKER}, sessions  # in stream order: OTHERS came first
    snapshots = await _sse(client, "/v1/progress", token, '"sessions"')
    shown = {s["session"] for s in snapshots if "session" in s}
    assert {s for s in shown if s.startswith(PREFIX)} == {MINE}, shown
    assert not any(other in json.dumps(snapshots + events) for other in OTHERS)


async def test_a_refusal_does_not_say_whether_a_session_exists(client: httpx.AsyncClient) -> None:
    token = credential("right", "read")
    answers = []
    for session in (OTHERS[0], f"{PREFIX}_out_never"):
        response = await client.get(
            f"/v1/sessions/{session}", headers={"Authorization": f"Bearer {token}"}
        )
        answers.append((response.status_code, response.text.replace(session, "S")))
    assert answers[0] == answers[1] and answers[0][0] == 403, answers


def test_the_matrix_tokens_are_what_they_say() -> None:
    """Guard the fixtures themselves: the right token decodes, the others differ as named."""
    right = credential("right", "run")
    assert right is not None
    claims = verify_token(SECRET, right)
    assert claims.scope == ["run"] and claims.sessions == GLOB
    wrong_scope = credential("wrong_scope", "run")
    assert wrong_scope is not None and verify_token(SECRET, wrong_scope).scope == ["read"]
    unsigned = credential("alg_none", "run")
    assert unsigned is not None and unsigned.endswith(".")
    assert (
        msgspec.json.decode(base64.urlsafe_b64decode(unsigned.split(".")[0] + "=="))["alg"]
        == "none"
    )
