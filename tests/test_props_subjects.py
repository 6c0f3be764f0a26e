"""Generated input for subjects and session ids (agentcast/subjects.py, agentcast/sessions.py).

Whatever a client sends as a session id or type pattern, a builder either
refuses it (InvalidSessionId / InvalidSubject) or yields `agentcast.evt.<valid
id>.` followed by type tokens, with `*` / `>` only where a filter means them.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from agentcast.errors import InvalidSessionId, InvalidSubject
from agentcast.events import EVENT_TYPES
from agentcast.sessions import is_valid_session_id, new_session_id, validate_session_id
from agentcast.subjects import (
    ctl_subject,
    event_subject,
    parse_event_subject,
    progress_subject,
    session_events,
    session_type_filter,
)
from tests.support.props import PROPS

_ID = r"[A-Za-z0-9_-]{1,64}"
_TOKEN = r"[A-Za-z0-9_-]+"
EVENT = re.compile(rf"agentcast\.evt\.{_ID}\.{_TOKEN}(\.{_TOKEN})*")
FILTER = re.compile(rf"agentcast\.evt\.({_ID}|\*)\.({_TOKEN}\.)*({_TOKEN}|>)")

ids = st.from_regex(_ID, fullmatch=True)
# Anything a client could send: text of any kind, ids with one character changed, NATS syntax.
hostile = st.text(max_size=80) | st.builds(
    lambda i, c, at: i[:at] + c + i[at:],
    ids,
    st.sampled_from(list(".*> \t\n\r\x00/%")),
    st.integers(0, 64),
)
types = st.sampled_from(sorted(EVENT_TYPES))


@PROPS
@given(value=hostile)
@example(value="a.b")
@example(value="")
@example(value="x" * 65)
@example(value="abc\n")
def test_a_session_id_is_valid_exactly_when_it_matches_the_pattern(value: str) -> None:
    valid = re.fullmatch(_ID, value) is not None
    assert is_valid_session_id(value) is valid
    if valid:
        assert validate_session_id(value) == value
    else:
        with pytest.raises(InvalidSessionId):
            validate_session_id(value)


@PROPS
@given(session=hostile | ids, event_type=types)
def test_no_session_input_yields_a_subject_outside_its_own(session: str, event_type: str) -> None:
    builders = (
        lambda: event_subject(session, event_type),
        lambda: session_events(session),
        lambda: ctl_subject(session),
        lambda: progress_subject(session),
    )
    for build in builders:
        try:
            subject = build()
        except InvalidSessionId:
            assert not is_valid_session_id(session)
            continue
        assert is_valid_session_id(session)
        assert subject.split(".")[2] == session
    if is_valid_session_id(session):
        assert EVENT.fullmatch(event_subject(session, event_type))
        assert parse_event_subject(event_subject(session, event_type)) == (session, event_type)


@PROPS
@given(
    session=st.just("*") | ids | hostile,
    pattern=st.text(max_size=40) | types | types.map(lambda t: t.rsplit(".", 1)[0] + ".*"),
)
@example(session="s", pattern="a b")  # was a filter with a space in it (guarded only by callers)
@example(session="s", pattern="tool.>")
@example(session="s", pattern="*")
@example(session="s", pattern="")
def test_a_type_filter_is_the_session_and_type_tokens_or_a_refusal(
    session: str, pattern: str
) -> None:
    try:
        subject = session_type_filter(session, pattern)
    except (InvalidSessionId, InvalidSubject):
        return
    assert FILTER.fullmatch(subject), subject
    assert subject.split(".")[2] == session


@PROPS
@given(subject=st.text(max_size=80) | st.builds("agentcast.evt.{}.{}".format, hostile, hostile))
@example(subject="agentcast.evt.a")
@example(subject="agentcast.evt..x")
@example(subject="agentcast.evt.*.x")
def test_parsing_a_subject_gives_a_valid_session_or_refuses(subject: str) -> None:
    try:
        session, event_type = parse_event_subject(subject)
    except InvalidSubject:
        return
    assert is_valid_session_id(session) and event_type
    assert subject == f"agentcast.evt.{session}.{event_type}"


def test_generated_session_ids_are_valid() -> None:
    assert all(is_valid_session_id(new_session_id()) for _ in range(200))
