"""Generated input for query parameters (gateway/params.py): `from`, `types`, `sessions`, `state`;
and `limit` with the rest over HTTP on a live gateway.

Every value a query string or WebSocket frame can carry is parsed or refused
with a 400 naming the parameter; what is accepted means what the SPEC says
(`tool.*` matches every type under `tool.`, a covering glob really covers).
"""

from __future__ import annotations

import fnmatch

import httpx
from hypothesis import assume, example, given
from hypothesis import strategies as st

from agentcast.errors import InvalidCursor
from agentcast.events import EVENT_TYPES
from agentcast.progress import STATES
from gateway.errors import ApiError
from gateway.params import (
    NOW,
    START,
    glob_covers,
    glob_session,
    parse_from,
    parse_glob,
    parse_state,
    parse_types,
    replay_filter,
)
from tests.support.gateway import GatewayProcess, auth
from tests.support.props import PROPS, QUICK

TYPES = sorted(EVENT_TYPES)
ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
globs = st.from_regex(r"[A-Za-z0-9_*?\[\]!-]{1,12}", fullmatch=True)
type_parts = (
    st.sampled_from(TYPES)
    | st.sampled_from(TYPES).map(lambda t: t.rsplit(".", 1)[0] + ".*")
    | st.text(max_size=12)
)


@PROPS
@given(value=st.none() | st.text(max_size=25), last=st.none() | st.text(max_size=25))
@example(value="start", last="")
@example(value="now", last="  7 ")
@example(value="", last=None)
def test_from_is_start_now_a_cursor_or_invalid_cursor(value: str | None, last: str | None) -> None:
    try:
        after = parse_from(value, last)
    except InvalidCursor:
        return
    if last:
        assert after >= 1 and str(after) == last.strip()
    elif value in (None, "start"):
        assert after == START
    elif value == "now":
        assert after == NOW
    else:
        assert value is not None and str(after) == value


@PROPS
@given(values=st.none() | st.lists(st.lists(type_parts, max_size=5).map(",".join), max_size=4))
@example(values=["text.delta"] * 100)  # repeats are one filter: counted once against the limit
@example(values=["tool.**"])
@example(values=["rate_limit.*"])
def test_types_filter_what_they_name_or_are_a_400(values: list[str] | None) -> None:
    try:
        found = parse_types(values)
    except ApiError as exc:
        assert exc.status == 400 and exc.code == "invalid_types"
        return
    parts = {p.strip() for v in values or [] for p in v.split(",") if p.strip()}
    if found is None:
        assert not parts
        return
    for event_type in TYPES:
        wanted = event_type in parts or any(
            p.endswith(".*") and event_type.startswith(p[:-1]) for p in parts
        )
        assert found(event_type) is wanted
    assert replay_filter(None, found).startswith("agentcast.evt.")


@PROPS
@given(value=st.none() | st.text(max_size=30) | globs, default=globs)
def test_a_sessions_glob_is_refused_or_usable(value: str | None, default: str) -> None:
    try:
        glob = parse_glob(value, default)
    except ApiError as exc:
        assert exc.status == 400 and exc.code == "invalid_sessions"
        return
    assert glob == (value or default)
    single = glob_session(glob)
    assert single is None or single == glob


@PROPS
@given(outer=globs, inner=globs, session=ids)
@example(outer="team_*", inner="team_a*", session="team_ab")
@example(outer="a*", inner="*", session="b")
def test_a_glob_said_to_cover_another_matches_everything_the_other_matches(
    outer: str, inner: str, session: str
) -> None:
    assume(fnmatch.fnmatchcase(session, inner))
    if glob_covers(outer, inner):
        assert fnmatch.fnmatchcase(session, outer)


@PROPS
@given(value=st.none() | st.sampled_from(STATES) | st.text(max_size=12))
def test_state_is_a_known_state_or_a_400(value: str | None) -> None:
    try:
        state = parse_state(value)
    except ApiError as exc:
        assert exc.status == 400 and exc.code == "invalid_state"
        return
    assert state == value and (state is None or state in STATES)


query_values = st.text(max_size=20) | st.sampled_from(
    ["start", "now", "1", "0", "-1", "1001", "100", "running", "text.delta,tool.*", "*", ""]
)
queries = st.dictionaries(
    st.sampled_from(["from", "types", "sessions", "limit", "state", "token"]) | st.text(max_size=5),
    query_values,
    max_size=4,
)


@QUICK
@given(params=queries)
@example(params={"limit": "0"})
@example(params={"limit": "1e3"})
@example(params={"state": ""})
@example(params={"types": "text.delta," * 70})
def test_query_strings_on_the_live_gateway_are_answered_or_refused_as_json(
    gateway: GatewayProcess, params: dict[str, str]
) -> None:
    """Over HTTP too (FastAPI checks `limit`): 200, or a 4xx JSON error naming the problem."""
    with httpx.Client(base_url=gateway.url, headers=auth(), timeout=30) as http:
        for path in ("/v1/sessions", "/v1/events", "/v1/progress"):
            with http.stream("GET", path, params=params) as response:
                if response.status_code == 200:
                    continue
                response.read()
            assert response.status_code in (400, 401, 403, 410, 422), (path, response.text)
            error = response.json()["error"]
            assert error["code"] and error["message"], (path, error)
