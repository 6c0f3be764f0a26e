"""Generated input for run options against the policy (agentcast/policy.py), and the schema.

Any JSON as `options` gives RunOptions inside the policy or PolicyViolation
(nothing else: a dict as `model` was a TypeError, a 500); the OpenAPI schema's
options (gateway/openapi.policy_schema) accepts exactly what the policy does.
The same holds for prompts, and for every pattern the schema gives a parameter.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema
from hypothesis import example, given
from hypothesis import strategies as st

from agentcast.errors import InvalidCursor, PolicyViolation
from agentcast.policy import resolve_options, validate_prompt
from agentcast.sessions import is_valid_session_id
from agentcast.settings import DEFAULT_TOOLS, Settings
from gateway import openapi
from gateway.errors import ApiError
from gateway.params import parse_from, parse_glob, parse_types
from tests.support.props import PROPS, json_values

SETTINGS = Settings.load(
    {"allowed_models": ["claude-haiku-4-5"], "max_turns": 12, "max_prompt_bytes": 200}, environ={}
)
OPTIONS_SCHEMA = jsonschema.Draft202012Validator(openapi.policy_schema(SETTINGS))

options = (
    st.none()
    | json_values
    | st.fixed_dictionaries(
        {},
        optional={
            "model": st.sampled_from(["claude-haiku-4-5", SETTINGS.default_model, "gpt-9"])
            | json_values,
            "max_turns": st.integers(-3, 40) | st.floats(-3, 40) | json_values,
            "allowed_tools": st.lists(st.sampled_from([*DEFAULT_TOOLS, "Nuke"]), max_size=4)
            | json_values,
            "cwd": st.just("/"),
        },
    )
)


@PROPS
@given(value=options)
@example(value={"model": {}})  # was TypeError (unhashable dict): a 500 on POST /v1/runs
@example(value={"model": []})
@example(value={"max_turns": 2.0})  # a JSON integer (JSON Schema agrees): was refused
@example(value={"max_turns": True})
@example(value={"allowed_tools": ["Bash", "Bash"]})
def test_options_are_inside_the_policy_or_refused_and_the_schema_agrees(value: Any) -> None:
    try:
        resolved = resolve_options(value, SETTINGS)
    except PolicyViolation as exc:
        assert exc.field.startswith("options")
        assert not OPTIONS_SCHEMA.is_valid(value), f"the schema allows {value!r}"
        return
    assert OPTIONS_SCHEMA.is_valid(value), f"the schema refuses {value!r}"
    assert resolved.model in {*SETTINGS.allowed_models, SETTINGS.default_model}
    assert 1 <= resolved.max_turns <= SETTINGS.max_turns and type(resolved.max_turns) is int
    assert set(resolved.allowed_tools) <= set(SETTINGS.allowed_tools)


PROMPT_SCHEMA = jsonschema.Draft202012Validator(openapi._text(SETTINGS, "prompt"))


@PROPS
@given(
    value=json_values | st.text(max_size=60) | st.text(" \t\n\u3000\x1c\x1e\x85\ufeff", max_size=5)
)
@example(value="   ")
@example(value="\u2028")
# schemathesis (ECMA-262 patterns) took "\x1e" for visible under `\S`; Python does not
@example(value="\x1e")
@example(value="\ufeff")  # whitespace to ECMA-262, not to Python's str.strip()
def test_a_prompt_is_non_blank_text_within_the_limit_or_refused(value: Any) -> None:
    try:
        prompt = validate_prompt(value, SETTINGS)
    except PolicyViolation:
        schema_ok = PROMPT_SCHEMA.is_valid(value)
        # The schema counts characters, the limit is UTF-8 bytes: only size may disagree.
        assert not schema_ok or len(value.encode()) > SETTINGS.max_prompt_bytes
        return
    assert PROMPT_SCHEMA.is_valid(prompt) and prompt.strip()


def _schema_accepts(pattern: str, value: str) -> bool:
    # JSON Schema patterns are ECMA 262, where `$` is the end of input; Python's `$` also
    # matches before a final newline, so test with the stricter reading.
    return re.search(pattern.replace("$", r"\Z"), value) is not None


def _accepted(parse: Any) -> bool:
    try:
        parse()
    except (ApiError, InvalidCursor):
        return False
    return True


texts = st.text(max_size=20) | st.from_regex(r"[A-Za-z0-9_.*,\[\]!?-]{0,20}", fullmatch=True)


@PROPS
@given(value=texts | st.from_regex(openapi.SESSION_ID, fullmatch=True))
def test_the_session_id_pattern_is_the_validator(value: str) -> None:
    assert _schema_accepts(openapi.SESSION_ID, value) is is_valid_session_id(value)


@PROPS
@given(value=texts | st.from_regex(openapi.CURSOR, fullmatch=True))
@example(value="18446744073709551616")
def test_the_cursor_pattern_admits_what_parses(value: str) -> None:
    if _accepted(lambda: parse_from(value)):
        assert _schema_accepts(openapi.CURSOR, value)
    elif _schema_accepts(openapi.CURSOR, value):
        assert int(value) >= 2**64  # well-formed but never issued: JetStream's range


@PROPS
@given(value=texts | st.from_regex(openapi.SESSION_GLOB, fullmatch=True))
def test_the_glob_pattern_is_the_validator(value: str) -> None:
    assert _schema_accepts(openapi.SESSION_GLOB, value) is _accepted(lambda: parse_glob(value, "*"))


@PROPS
@given(value=texts | st.from_regex(openapi.TYPES_ITEM, fullmatch=True))
@example(value=" text.delta , tool.* ,")
def test_the_types_pattern_is_the_validator(value: str) -> None:
    assert _schema_accepts(openapi.TYPES_ITEM, value) is _accepted(lambda: parse_types([value]))
