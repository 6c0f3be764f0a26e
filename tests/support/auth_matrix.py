"""The auth matrix's credentials, sessions and gateway (tests/test_auth_matrix*.py).

Sessions: MINE inside the right token's glob, OTHERS outside it with events and
snapshots of their own (they must never show), MARKER published last. Each
kind of credential in CREDENTIALS is made by `credential(kind, scope)`.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import pytest

from agentcast.events import RunQueuedData, TextDeltaData
from agentcast.progress import ProgressSnapshot
from agentcast.tokens import mint_token
from tests.support.events import build_events
from tests.support.gateway import SECRET, GatewayProcess
from tests.support.private_gateway import private_gateway

PREFIX: Final = "mx" + uuid.uuid4().hex[:8]
GLOB: Final = f"{PREFIX}_in_*"
MINE: Final = f"{PREFIX}_in_a"
"""The session every request names: inside the right token's glob."""
OTHERS: Final = (f"{PREFIX}_out_a", f"{PREFIX}_out_b")
"""Sessions outside it, with events and snapshots of their own: they must never show."""
MARKER: Final = f"{PREFIX}_in_last"
"""Published last: a firehose that has reached it has shown everything before."""
APP: Final = MINE
"""The Durable Streams app stream every `{name}` route names (made by the fixture)."""
NEVER: Final = f"{PREFIX}_in_never"
"""Inside the glob, and never made."""


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
    name: str = APP
    """What `{name}` (an app stream) is in the path."""


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
        made = httpx.put(
            f"{gateway.url}/ds/v1/stream/{APP}", json=[], timeout=30,
            headers={"Authorization": f"Bearer {credential('right', 'run')}"},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        yield gateway


def leaked(body: str, token: str | None) -> list[str]:
    """What of another session, the token or the gateway's insides `body` shows."""
    found = [other for other in OTHERS if other in body]
    if token and token in body:
        found.append("the token")
    found += [word for word in (SECRET, "Traceback", "nats:", "/tmp/") if word in body]
    return found
