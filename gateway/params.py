"""Stream parameters, pure: `from`, `types`, `sessions` parsed and checked.

Used by both transports (SSE query strings and WebSocket subscribe frames), so
the same input is accepted or rejected the same way on both.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from typing import Final, Literal, get_args

from agentcast.cursor import parse_cursor
from agentcast.events import EVENT_TYPES
from agentcast.progress import STATES
from agentcast.sessions import is_valid_session_id
from agentcast.subjects import EVENTS_ALL, TYPE_PATTERN, session_events, session_type_filter
from gateway.errors import ApiError

START: Final = 0
"""`from=start`: replay after stream sequence 0, i.e. from the first event."""
NOW: Final = -1
"""`from=now`: live events only."""

GLOB_PATTERN: Final = r"[A-Za-z0-9_\-*?\[\]!]{1,128}"
_GLOB: Final = re.compile(GLOB_PATTERN)
_GLOB_META: Final = frozenset("*?[]!")
MAX_TYPES: Final = 64
MAX_COALESCE_MS: Final = 10_000

Format = Literal["agentcast", "ag-ui", "ai-sdk"]
FORMATS: Final[tuple[Format, ...]] = get_args(Format)
_AGUI_MEDIA: Final = "application/vnd.ag-ui"


class TypeFilter:
    """`types=text.delta,tool.*`: exact types, and prefixes matched at any depth."""

    __slots__ = ("exact", "patterns", "prefixes")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(dict.fromkeys(patterns))
        self.exact = frozenset(p for p in self.patterns if not p.endswith(".*"))
        self.prefixes = tuple(p[:-1] for p in self.patterns if p.endswith(".*"))

    def __call__(self, event_type: str) -> bool:
        return event_type in self.exact or event_type.startswith(self.prefixes)


def parse_from(value: str | None, last_event_id: str | None = None) -> int:
    """START, NOW, or the stream sequence of a cursor; `Last-Event-ID` wins over `from`."""
    if last_event_id:
        return parse_cursor(last_event_id.strip())
    if value is None or value == "start":
        return START
    if value == "now":
        return NOW
    return parse_cursor(value)


def parse_types(values: Iterable[str] | None) -> TypeFilter | None:
    """A TypeFilter, or None for every type; unknown types are a 400."""
    if values is None:
        return None
    # Distinct patterns count: `text.delta,text.delta` is one filter, not two.
    patterns = list(dict.fromkeys(p.strip() for value in values for p in value.split(",")))
    patterns = [p for p in patterns if p]
    if not patterns:
        return None
    if len(patterns) > MAX_TYPES:
        raise ApiError(400, "invalid_types", f"at most {MAX_TYPES} distinct type patterns")
    for pattern in patterns:
        if not TYPE_PATTERN.fullmatch(pattern):
            raise ApiError(400, "invalid_types", f"invalid type pattern {pattern[:80]!r}")
        if pattern.endswith(".*"):
            known = any(t.startswith(pattern[:-1]) for t in EVENT_TYPES)
        else:
            known = pattern in EVENT_TYPES
        if not known:
            raise ApiError(400, "invalid_types", f"unknown event type {pattern!r}")
    return TypeFilter(patterns)


def parse_state(value: str | None) -> str | None:
    """`state=`: one of the progress states, or None for all."""
    if value is not None and value not in STATES:
        raise ApiError(400, "invalid_state", f"state must be one of: {', '.join(STATES)}")
    return value


def parse_glob(value: str | None, default: str) -> str:
    """A session glob (fnmatch syntax over session ids); absent: `default`, empty: a 400."""
    glob = default if value is None else value
    if not _GLOB.fullmatch(glob):
        raise ApiError(400, "invalid_sessions", f"invalid sessions glob {glob[:80]!r}")
    return glob


def is_literal(glob: str) -> bool:
    return not _GLOB_META.intersection(glob)


def glob_covers(outer: str, inner: str) -> bool:
    """True when every session `inner` can match also matches `outer` (conservatively)."""
    if outer == "*" or outer == inner:
        return True
    if is_literal(inner):
        return fnmatch.fnmatchcase(inner, outer)
    if (
        outer.endswith("*")
        and inner.endswith("*")
        and is_literal(outer[:-1])
        and is_literal(inner[:-1])
    ):
        return inner[:-1].startswith(outer[:-1])
    return False


def replay_filter(session: str | None, types: TypeFilter | None) -> str:
    """The JetStream subject filter for replay: one session or all, one type pushed down."""
    if types is not None and len(types.patterns) == 1:
        return session_type_filter(session or "*", types.patterns[0])
    if session is None:
        return EVENTS_ALL
    return session_events(session)


def glob_session(glob: str) -> str | None:
    """The one session a literal glob names (so replay can filter on it), else None."""
    return glob if is_literal(glob) and is_valid_session_id(glob) else None


def parse_format(value: str | None, accept: str | None = None) -> Format:
    """`format=` wins; else an `Accept` naming one (`application/vnd.ag-ui...`, or
    `text/event-stream; format=ai-sdk`); else agentcast's own."""
    if value is not None and value != "":
        for known in FORMATS:
            if value == known:
                return known
        raise ApiError(400, "invalid_format", f"format must be one of {', '.join(FORMATS)}")
    for media in (accept or "").split(","):
        kind, *params = (p.strip() for p in media.split(";"))
        if kind.startswith(_AGUI_MEDIA):
            return "ag-ui"
        for param in params:
            name, _, wanted = param.partition("=")
            for known in FORMATS:
                if name.strip() == "format" and wanted.strip().strip('"') == known:
                    return known
    return "agentcast"


def parse_coalesce(value: int | None) -> int:
    """`coalesce_ms=`: 0 (off) to MAX_COALESCE_MS."""
    if value is None:
        return 0
    if not 0 <= value <= MAX_COALESCE_MS:
        raise ApiError(400, "invalid_coalesce", f"coalesce_ms must be 0..{MAX_COALESCE_MS}")
    return value
