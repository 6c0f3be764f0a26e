"""Server policy over run requests: what a client may ask for, and what it may not.

The gateway checks it when a request comes in (a clear 4xx at once); the
worker checks it again when it takes the request (anyone can publish to
NATS directly), so both use this one module.

A request may pick a model from `allowed_models`, lower `max_turns`, and
narrow the tool list; the working directory and permission mode come from
policy only. Anything outside raises PolicyViolation naming the field.
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec

from agentcast.errors import PolicyViolation, PromptTooLarge
from agentcast.settings import Settings

_CLIENT_OPTIONS = frozenset({"model", "max_turns", "allowed_tools"})


class RunOptions(msgspec.Struct, frozen=True, kw_only=True):
    """The options a run actually gets, after policy."""

    model: str
    max_turns: int
    allowed_tools: list[str]


VISIBLE_CHAR: Final = r"[^\s\x1c-\x1f\x85\ufeff]"
"""A prompt or message needs one character that is not whitespace, by this class.

The same class in Python's `re` and in ECMA-262 (how JSON Schema patterns,
and schemathesis, read the OpenAPI schema): Python's whitespace lacks U+FEFF
and ECMA's lacks U+001C-U+001F and U+0085, so each is named.
"""
_VISIBLE: Final = re.compile(VISIBLE_CHAR)


def validate_prompt(prompt: object, settings: Settings, field: str = "prompt") -> str:
    if not isinstance(prompt, str) or not _VISIBLE.search(prompt):
        raise PolicyViolation(field, "must be a non-empty string")
    size = len(prompt.encode())
    if size > settings.max_prompt_bytes:
        raise PromptTooLarge(
            field, f"{size} bytes is over the limit of {settings.max_prompt_bytes}"
        )
    return prompt


def resolve_options(options: object, settings: Settings) -> RunOptions:
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise PolicyViolation("options", "must be an object")
    unknown = sorted(set(options) - _CLIENT_OPTIONS)
    if unknown:
        raise PolicyViolation("options", f"not settable by clients: {', '.join(map(str, unknown))}")
    return RunOptions(
        model=_model(options.get("model"), settings),
        max_turns=_max_turns(options.get("max_turns"), settings),
        allowed_tools=_tools(options.get("allowed_tools"), settings),
    )


def _model(value: Any, settings: Settings) -> str:
    if value is None:
        return settings.default_model
    allowed = set(settings.allowed_models) | {settings.default_model}
    if not isinstance(value, str) or value not in allowed:
        raise PolicyViolation(
            "options.model", f"{value!r} is not allowed (allowed: {', '.join(sorted(allowed))})"
        )
    return str(value)


def _max_turns(value: Any, settings: Settings) -> int:
    if value is None:
        return settings.max_turns
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON has one number type: 2.0 is the integer 2 (JSON Schema agrees)
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 1 <= value <= settings.max_turns
    ):
        raise PolicyViolation(
            "options.max_turns", f"must be an integer from 1 to {settings.max_turns}"
        )
    return value


def _tools(value: Any, settings: Settings) -> list[str]:
    if value is None:
        return list(settings.allowed_tools)
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise PolicyViolation("options.allowed_tools", "must be a list of tool names")
    outside = sorted(set(value) - set(settings.allowed_tools))
    if outside:
        raise PolicyViolation(
            "options.allowed_tools", f"not allowed by server policy: {', '.join(outside)}"
        )
    return list(dict.fromkeys(value))
