"""Answers to the requests Claude Code makes besides the agent loop itself (pure).

Seen from Claude Code 2.1.x under the Agent SDK: a session-title request
(streaming, `tools: []`, `output_config.format` a JSON schema `{title}`)
right after the first prompt. Any such tool-less request gets a short answer
shaped like the schema it asks for, or a title-like text.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .conversation import Conversation
from .scenario import TextBlock, Turn

__all__ = ["is_side_call", "side_turn"]

_MARKER_RE = re.compile(r"\[(?:scenario|speed):[^\]]*\]")
_SESSION_RE = re.compile(r"<session>\s*(.*?)\s*</session>", re.DOTALL)
# Titles name the subject, not the request verb (the CLI's own instruction).
_VERBS = {"write", "fix", "add", "check", "implement", "debug", "refactor", "update", "make", "run"}
_TITLE_WORDS = 5


def is_side_call(body: dict[str, Any], conv: Conversation) -> bool:
    """A request without tools is not the agent loop, unless it names a scenario."""
    return not body.get("tools") and not re.search(r"\[scenario:", conv.prompt)


def _title(prompt: str) -> str:
    session = _SESSION_RE.search(prompt)
    words = _MARKER_RE.sub(" ", session.group(1) if session else prompt).split()
    while words and words[0].lower() in _VERBS | {"a", "an", "the"}:
        words.pop(0)
    title = " ".join(words[:_TITLE_WORDS]).strip(" .,:;!?")
    return title[:1].upper() + title[1:] if title else "Scripted session"


def _sample(schema: dict[str, Any], title: str, depth: int = 0) -> Any:
    """A minimal value valid against a simple JSON schema (depth-bounded)."""
    kind = schema.get("type")
    if schema.get("enum"):
        return schema["enum"][0]
    if kind == "object" and depth < 4:
        props = schema.get("properties", {})
        required = schema.get("required", list(props))
        return {name: _sample(props.get(name, {}), title, depth + 1) for name in required}
    if kind == "array":
        return []
    if kind in ("number", "integer"):
        return 0
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return title


def _json_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    for holder in (body.get("output_config"), body):
        if isinstance(holder, dict):
            fmt = holder.get("format") or holder.get("output_format")
            if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
                schema = fmt.get("schema")
                return schema if isinstance(schema, dict) else {}
    return None


def side_turn(body: dict[str, Any], conv: Conversation) -> Turn:
    """A short, plausible answer: JSON when a schema is asked for, else a title."""
    title = _title(conv.prompt)
    schema = _json_schema(body)
    text = title if schema is None else json.dumps(_sample(schema, title))
    return Turn(blocks=[TextBlock(text=text)])
