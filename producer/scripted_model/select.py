"""Choose the scenario and the turn a request gets, and fill placeholders (pure)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import msgspec

from .conversation import Conversation
from .scenario import Block, Scenario, TextBlock, ThinkingBlock, ToolUseBlock, Turn

__all__ = ["DEFAULT_SCENARIO", "fill_placeholders", "plan_turn", "prompt_speed", "select_scenario"]

logger = logging.getLogger(__name__)

DEFAULT_SCENARIO = "coding"
_MARKER_RE = re.compile(r"\[scenario:([A-Za-z0-9_-]+)\]")
_SPEED_RE = re.compile(r"\[speed:([0-9]*\.?[0-9]+)\]")
_MAX_SPEED = 100.0
_WORD_RE = re.compile(r"[a-z0-9_-]+")
_PLACEHOLDER_RE = re.compile(
    r"\{(cwd|prompt|first_prompt|last_tool_result|last_result:[A-Za-z0-9_-]+|task:\d+)\}"
)
_QUOTE_LIMIT = 2_000
_TOOL_SEARCH = "ToolSearch"


def select_scenario(scenarios: Mapping[str, Scenario], prompt: str) -> Scenario:
    """`[scenario:NAME]` in the prompt wins, else the most keyword hits, else the default."""
    marker = _MARKER_RE.search(prompt)
    if marker:
        if marker.group(1) in scenarios:
            return scenarios[marker.group(1)]
        logger.warning("Unknown scenario %r in prompt; using keywords", marker.group(1))
    words = set(_WORD_RE.findall(prompt.lower()))
    best: tuple[int, str] = (0, "")
    for name in sorted(scenarios):
        hits = len(words.intersection(scenarios[name].keywords))
        if hits > best[0]:
            best = (hits, name)
    if best[0]:
        return scenarios[best[1]]
    if DEFAULT_SCENARIO in scenarios:
        return scenarios[DEFAULT_SCENARIO]
    return scenarios[min(scenarios)]


def prompt_speed(prompt: str) -> float | None:
    """`[speed:X]` in the prompt overrides the server's speed for the requests answering it.

    So one server can serve fast tests and a slow progress test side by side.
    """
    match = _SPEED_RE.search(prompt)
    return min(float(match.group(1)), _MAX_SPEED) if match else None


def _tool_search_turn(names: list[str]) -> Turn:
    # What Claude does when a tool it wants is deferred: load its schema first.
    query = "select:" + ",".join(names)
    call = ToolUseBlock(name=_TOOL_SEARCH, input={"query": query, "max_results": len(names)})
    return Turn(blocks=[call])


def plan_turn(scenario: Scenario, conv: Conversation) -> Turn:
    """The turn answering this request: the n-th turn after the prompt.

    When the chosen variant needs tools that the CLI defers behind ToolSearch,
    an extra first turn loads them, and later turns are shifted by one.
    """
    variant, turns = scenario.pick_turns(conv.offered_tools)
    required = variant.requires_tools if variant else []
    scripted_search = any(
        isinstance(b, ToolUseBlock) and b.name == _TOOL_SEARCH for b in turns[0].blocks
    )
    if conv.turn == 0:
        deferred = [name for name in required if name in conv.deferred_tools]
        if deferred and _TOOL_SEARCH in conv.tools and not scripted_search:
            return _tool_search_turn(deferred)
        index = 0
    else:
        searched_first = conv.turn_tools[0] == (_TOOL_SEARCH,) and not scripted_search
        index = conv.turn - (1 if searched_first else 0)
    if index < len(turns):
        return turns[index]
    # The CLI asked once more than scripted (e.g. after a failed tool): end politely.
    logger.warning("Scenario %r has no turn %d; ending the conversation", scenario.name, index)
    return Turn(blocks=[TextBlock(text="Done.")])


def _placeholders(conv: Conversation) -> dict[str, str]:
    values = {
        "cwd": conv.cwd or ".",
        "prompt": conv.prompt[:_QUOTE_LIMIT],
        "first_prompt": conv.first_prompt[:_QUOTE_LIMIT],
        "last_tool_result": conv.tool_results[-1][1][:_QUOTE_LIMIT] if conv.tool_results else "",
    }
    for name, result in conv.tool_results:
        values[f"last_result:{name}"] = result[:_QUOTE_LIMIT]
    for number, task_id in enumerate(conv.created_tasks, start=1):
        values[f"task:{number}"] = task_id
    return values


def _fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        # Unknown {names} are left alone: tool inputs often hold code with braces.
        return _PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), value)
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    return value


def _fill_block(block: Block, values: dict[str, str]) -> Block:
    match block:
        case TextBlock(text=text):
            return TextBlock(text=_fill(text, values))
        case ThinkingBlock(thinking=thinking):
            return ThinkingBlock(thinking=_fill(thinking, values))
        case ToolUseBlock(name=name, input=tool_input):
            return ToolUseBlock(name=name, input=_fill(tool_input, values))


def fill_placeholders(turn: Turn, conv: Conversation) -> Turn:
    """Replace the placeholders a scenario may use in text, thinking and tool input strings.

    `{cwd}` the working directory, `{prompt}` and `{first_prompt}`,
    `{last_tool_result}`, `{last_result:TOOL}` (the latest result of TOOL),
    `{task:N}` (the id the N-th TaskCreate call got).
    """
    if not turn.blocks:
        return turn
    values = _placeholders(conv)
    return msgspec.structs.replace(turn, blocks=[_fill_block(b, values) for b in turn.blocks])
