"""NATS subject names, builders and parsers (SPEC "NATS subjects and streams")."""

from __future__ import annotations

from typing import Final

from agentcast.errors import InvalidSubject
from agentcast.sessions import is_valid_session_id, validate_session_id

EVENTS_STREAM: Final = "AGENTCAST_EVENTS"
RUNS_STREAM: Final = "AGENTCAST_RUNS"
SESSIONS_BUCKET: Final = "agentcast_sessions"
REVOKED_BUCKET: Final = "agentcast_revoked"
"""Revoked token ids (key: jti); gateways watch it (agentcast/revocation.py)."""

EVENT_PREFIX: Final = "agentcast.evt"
EVENTS_ALL: Final = "agentcast.evt.>"
LIVE_PREFIX: Final = "agentcast.live"
LIVE_ALL: Final = "agentcast.live.>"
"""JetStream republishes each stored event here, with Nats-Sequence (the cursor)."""
RUNS_SUBMIT: Final = "agentcast.runs.submit"
RUNS_REJECTED: Final = "agentcast.runs.rejected"
CTL_PREFIX: Final = "agentcast.ctl"
PROGRESS_PREFIX: Final = "agentcast.progress"

_EVENT_PREFIX_DOT: Final = EVENT_PREFIX + "."


def event_subject(session: str, event_type: str) -> str:
    """`agentcast.evt.<session>.<type>`; the type's dots become subject tokens."""
    return f"{_EVENT_PREFIX_DOT}{validate_session_id(session)}.{event_type}"


def session_events(session: str) -> str:
    """Every event of one session: `agentcast.evt.<session>.>`."""
    return f"{_EVENT_PREFIX_DOT}{validate_session_id(session)}.>"


def session_type_filter(session_token: str, type_pattern: str) -> str:
    """A subject filter for a session token (an id or `*`) and a type pattern.

    `tool.*` (SPEC: every type under that prefix, at any depth) maps to the
    NATS wildcard `tool.>`; an exact type maps to itself.
    """
    if session_token != "*":
        validate_session_id(session_token)
    if type_pattern.endswith(".*"):
        return f"{_EVENT_PREFIX_DOT}{session_token}.{type_pattern[:-2]}.>"
    return f"{_EVENT_PREFIX_DOT}{session_token}.{type_pattern}"


def parse_event_subject(subject: str) -> tuple[str, str]:
    """Split an event subject into (session, type); raises InvalidSubject."""
    if not subject.startswith(_EVENT_PREFIX_DOT):
        raise InvalidSubject(subject)
    session, sep, event_type = subject[len(_EVENT_PREFIX_DOT) :].partition(".")
    if not sep or not event_type or not is_valid_session_id(session):
        raise InvalidSubject(subject)
    return session, event_type


def ctl_subject(session: str) -> str:
    return f"{CTL_PREFIX}.{validate_session_id(session)}"


def progress_subject(session: str) -> str:
    return f"{PROGRESS_PREFIX}.{validate_session_id(session)}"
