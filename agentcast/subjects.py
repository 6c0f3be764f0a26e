"""NATS subject names, builders and parsers (SPEC "NATS subjects and streams")."""

from __future__ import annotations

import re
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

APP_STREAM: Final = "AGENTCAST_APP"
"""Application streams (the Durable Streams facade, gateway/durable/), apart from sessions."""
APP_PREFIX: Final = "agentcast.app"
"""`agentcast.app.<name>.msg`: one stored message of an application stream;
`agentcast.app.<name>.end`: its last one, which closes it (it may carry data)."""
APP_END: Final = "end"
APP_ALL: Final = "agentcast.app.>"
APP_META_PREFIX: Final = "agentcast.appmeta"
"""`agentcast.appmeta.<name>`: the stream's metadata (its content type); absent: no stream."""
APP_META_ALL: Final = "agentcast.appmeta.>"
APP_LIVE_PREFIX: Final = "agentcast.applive"
APP_LIVE_ALL: Final = "agentcast.applive.>"
"""AGENTCAST_APP republishes each stored message here, as AGENTCAST_EVENTS does on LIVE_ALL."""

_EVENT_PREFIX_DOT: Final = EVENT_PREFIX + "."
TYPE_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*(\.\*)?")
"""An event type, or a prefix of types `prefix.*`: dot-separated tokens, never a wildcard
of NATS's own (`*` or `>` inside a token), whitespace or an empty token."""


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
    if not TYPE_PATTERN.fullmatch(type_pattern):
        raise InvalidSubject(f"{_EVENT_PREFIX_DOT}{session_token}.{type_pattern}")
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


def app_subject(name: str, *, closing: bool = False, producer: str | None = None) -> str:
    """Where messages of application stream `name` are stored (names follow session ids):
    `.msg`, `.msg.<producer token>` from an idempotent producer, `.end` the closing one."""
    if closing:
        return f"{APP_PREFIX}.{validate_session_id(name)}.{APP_END}"
    suffix = f".{producer}" if producer else ""
    return f"{APP_PREFIX}.{validate_session_id(name)}.msg{suffix}"


def app_messages(name: str) -> str:
    return f"{APP_PREFIX}.{validate_session_id(name)}.>"


def app_meta_subject(name: str) -> str:
    return f"{APP_META_PREFIX}.{validate_session_id(name)}"
