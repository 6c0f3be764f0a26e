"""The auth matrix: every HTTP route and every WebSocket op x every kind of credential.

Credentials: none, garbage, expired, wrong signature, alg none, wrong scope,
a session outside the token's glob, and the right token. Exactly the right one
passes; the first five get 401 `unauthorized` (WebSocket: refused at the
handshake), the last two 403 `forbidden` (WebSocket: an `error` frame), always
as the JSON error. Listings (`/v1/sessions`, the `/v1/events` firehose,
`/v1/progress`) and error messages carry nothing outside the token's glob.

The route list comes from the app itself: a route with neither a ROUTES entry
nor a place in PUBLIC fails `test_every_route_is_in_the_matrix`, and so does a
WebSocket op missing from WS_OPS. A new route declares what it needs there:
`Need(scope, ...)` (see `Need`), or PUBLIC when it needs no token.
"""

from __future__ import annotations

import base64
import json
import time
import typing
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import msgspec
import pytest
import websockets

from agentcast.events import RunQueuedData, TextDeltaData
from agentcast.progress import ProgressSnapshot
from agentcast.settings import Settings
from agentcast.tokens import mint_token
from agentcast.ws_ops import ClientOp
from gateway.app import create_app
from tests.support.events import build_events
from tests.support.gateway import SECRET, GatewayProcess, ws_reply
from tests.support.private_gateway import private_gateway

PREFIX: Final = "mx" + uuid.uuid4().hex[:8]
GLOB: Final = f"{PREFIX}_in_*"
MINE: Final = f"{PREFIX}_in_a"
"""The session every request names: inside the right token's glob."""
OTHERS: Final = (f"{PREFIX}_out_a", f"{PREFIX}_out_b")
"""Sessions outside it, with events and snapshots of their own: they must never show."""
MARKER: Final = f"{PREFIX}_in_last"
"""Published last: a firehose that has reached it has shown everything before."""


@dataclass(frozen=True)
class Need:
    """What a route needs: a scope, and (`bound`) that the token covers the named session.

    A route that is not bound to one session (a listing) lets a token whose glob
    is elsewhere through, and shows it nothing of ours (the listing tests).
    `ok` is what the right token gets; a 4xx there means it passed auth and
    failed later (409: no worker runs the session).
    """

    scope: str
    bound: bool = True
    body: dict[str, Any] | None = None
    params: dict[str, str] = field(default_factory=dict)
    ok: frozenset[int] = frozenset({200})
    stream: bool = False


ROUTES: Final[dict[tuple[str, str], Need]] = {
    ("POST", "/v1/runs"): Need("run", body={"prompt": "hi", "session": MINE}, ok=frozenset({202})),
    ("POST", "/v1/sessions/{session}/cancel"): Need("run", ok=frozenset({409})),
    ("POST", "/v1/sessions/{session}/messages"): Need("run", body={"text": "and then?"}),
    ("GET", "/v1/sessions"): Need("read", bound=False),
    ("GET", "/v1/sessions/{session}"): Need("read"),
    ("GET", "/v1/sessions/{session}/events"): Need("read", stream=True),
    ("GET", "/v1/events"): Need("read", params={"sessions": MINE}, stream=True),
    ("GET", "/v1/progress"): Need("read", bound=False, stream=True),
}
PUBLIC: Final = frozenset(
    {("GET", p) for p in ("/healthz", "/readyz", "/metrics", "/", "/static/agentcast.js",
                          "/dashboard/{name}", "/openapi.json", "/docs", "/docs/oauth2-redirect",
                          "/redoc")}
)  # fmt: skip
"""Routes that need no token: operations, the dashboard's files, the API docs."""

WS_OPS: Final[dict[str, Need | None]] = {
    "subscribe": Need("read"),
    "unsubscribe": Need("read"),
    "run": Need("run"),
    "cancel": Need("run"),
    "message": Need("run"),
    "ping": None,  # any valid token
}
_WS_FRAMES: Final[dict[str, dict[str, Any]]] = {
    "subscribe": {"op": "subscribe", "session": MINE},
    "unsubscribe": {"op": "unsubscribe", "session": MINE},
    "run": {"op": "run", "prompt": "hi", "session": MINE},
    "cancel": {"op": "cancel", "session": MINE},
    "message": {"op": "message", "session": MINE, "text": "and then?"},
    "ping": {"op": "ping"},
}
_WS_PASSED: Final = {
    "subscribe": ("subscribed", None), "unsubscribe": ("ack", None), "run": ("ack", None),
    "cancel": ("error", "not_running"), "message": ("ack", None), "ping": ("pong", None),
}  # fmt: skip

UNAUTHENTICATED: Final = ("none", "garbage", "expired", "wrong_signature", "alg_none")
CREDENTIALS: Final = (*UNAUTHENTICATED, "wrong_scope", "outside_glob", "right")
_OTHER_SECRET: Final = "another-secret-that-signs-nothing-here"
_WRONG_SCOPE: Final = {"read": ["run"], "run": ["read"], "admin": ["read", "run"]}


def _unsigned(scopes: list[str], sessions: str) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"scope": scopes, "sessions": sessions, "iat": now, "exp": now + 600, "jti": "x"}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def credential(kind: str, scope: str) -> str | None:
    """The token of `kind` for a route or op that needs `scope`."""
    right = [scope]
    tokens: dict[str, Any] = {
        "none": lambda: None,
        "garbage": lambda: "not-a-token",
        "expired": lambda: mint_token(SECRET, scopes=right, sessions=GLOB, ttl_s=-60),
        "wrong_signature": lambda: mint_token(_OTHER_SECRET, scopes=right, sessions=GLOB),
        "alg_none": lambda: _unsigned(right, GLOB),
        "wrong_scope": lambda: mint_token(SECRET, scopes=_WRONG_SCOPE[scope], sessions=GLOB),
        "outside_glob": lambda: mint_token(SECRET, scopes=right, sessions=f"{PREFIX}_out_*"),
        "right": lambda: mint_token(SECRET, scopes=right, sessions=GLOB),
    }
    token: str | None = tokens[kind]()
    return token


def _snapshot(session: str) -> ProgressSnapshot:
    return ProgressSnapshot(session=session, state="running", run=1, updated_at=1)


def _seed_events() -> list[Any]:
    run = [RunQueuedData(prompt="seeded"), TextDeltaData(index=0, text="seeded text")]
    events = []
    for session in (*OTHERS, MINE, MARKER):
        events += build_events(session, run)
    return events


@pytest.fixture(scope="module")
def matrix_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    snapshots = [_snapshot(s) for s in (*OTHERS, MINE)]
    with private_gateway(
        tmp_path_factory.mktemp("matrix"), events=_seed_events(), snapshots=snapshots
    ) as gateway:
        yield gateway


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
    ops = {cls.__struct_config__.tag for cls in typing.get_args(ClientOp)}
    assert ops == set(WS_OPS), f"WebSocket ops without a matrix entry: {sorted(ops - set(WS_OPS))}"


def _leaks(body: str, token: str | None) -> list[str]:
    found = [other for other in OTHERS if other in body]
    if token and token in body:
        found.append("the token")
    found += [word for word in (SECRET, "Traceback", "nats:", "/tmp/") if word in body]
    return found


async def _call(
    http: httpx.AsyncClient, method: str, path: str, need: Need, token: str | None, via: str
) -> tuple[int, httpx.Headers, str]:
    headers = {"Authorization": f"Bearer {token}"} if token and via == "header" else {}
    params = {**need.params, **({"token": token} if token and via == "query" else {})}
    url = path.replace("{session}", MINE)
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
        if leaks := _leaks(body, token):
            wrong.append(f"{kind}: the error shows {leaks}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(("method", "path"), sorted(PUBLIC))
async def test_public_routes_need_no_token_and_show_no_session(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path.replace("{name}", "app.js"))
    assert response.status_code in (200, 404), response.text[:300]
    assert not _leaks(response.text, None) and MINE not in response.text


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


@pytest.mark.parametrize("kind", CREDENTIALS)
async def test_websocket_ops_pass_only_with_the_right_token(
    matrix_gateway: GatewayProcess, kind: str
) -> None:
    """One socket per credential (the handshake needs any valid token), every op on it."""
    wrong = []
    for op, need in WS_OPS.items():
        scope = need.scope if need is not None else "read"
        token = credential(kind, scope)
        url = matrix_gateway.ws_url + (f"?token={token}" if token else "")
        if kind in UNAUTHENTICATED:
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets.connect(url):
                    pass
            response = refused.value.response
            error = json.loads(response.body)["error"]
            if response.status_code != 401 or error["code"] != "unauthorized":
                wrong.append(f"{op}: handshake {response.status_code} {error}")
            if leaks := _leaks(response.body.decode(), token):
                wrong.append(f"{op}: the refusal shows {leaks}")
            continue
        async with websockets.connect(url) as ws:
            if op == "unsubscribe":  # what there is to unsubscribe from, if the token may
                await ws.send(json.dumps(_WS_FRAMES["subscribe"]))
                await ws_reply(ws)
            await ws.send(json.dumps(_WS_FRAMES[op]))
            reply = await ws_reply(ws)
        passes = need is None or kind == "right"
        want_op, want_code = _WS_PASSED[op] if passes else ("error", "forbidden")
        if reply["op"] != want_op or reply.get("code") != want_code:
            wrong.append(f"{op}: {reply}, expected {want_op} {want_code or ''}")
        if leaks := _leaks(json.dumps(reply), token):
            wrong.append(f"{op}: the reply shows {leaks}")
    assert not wrong, "\n".join(wrong)


def test_the_matrix_tokens_are_what_they_say() -> None:
    """Guard the fixtures themselves: the right token decodes, the others differ as named."""
    from agentcast.tokens import verify_token

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
