"""Scenario files: the msgspec schema, loading and validation.

A scenario is what the scripted model "says" in answer to one prompt: a list of
turns, one per Messages API request of the agent loop (turn n answers the
request that carries n assistant messages after the prompt). Each turn is
either an assistant message (text, thinking and tool_use blocks) or an API error.

```json
{"name": "bash", "keywords": ["shell", "echo"],
 "turns": [
   {"blocks": [{"type": "tool_use", "name": "Bash",
                "input": {"command": "echo hi", "description": "Print a greeting"}}]},
   {"blocks": [{"type": "text", "text": "The command printed: {last_result:Bash}"}]}]}
```

- Turn fields: `blocks` or `error` (`{"status", "type", "message"}`),
  `stop_reason` (default: tool_use when a tool is called, else end_turn),
  `words_per_delta`, `tokens_per_second`.
- Strings in blocks may hold placeholders, filled per request (see
  `select.fill_placeholders`): `{cwd}`, `{prompt}`, `{first_prompt}`,
  `{last_tool_result}`, `{last_result:TOOL}`, `{task:N}`.
- `variants` hold alternative turn lists for different tool sets (the task
  tools of newer Claude Code, TodoWrite of older ones, neither): the first
  variant whose `requires_tools` the request offers is played, else `turns`.
  Tools the CLI defers behind ToolSearch count as offered: the model loads
  them with a ToolSearch call first, as Claude does.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import msgspec

from agentcast.codec import json_decoder_of

__all__ = [
    "ApiError",
    "Block",
    "Scenario",
    "ScenarioError",
    "TextBlock",
    "ThinkingBlock",
    "ToolUseBlock",
    "Turn",
    "Variant",
    "load_scenarios",
]

logger = logging.getLogger(__name__)

StopReason = Literal["end_turn", "tool_use", "max_tokens", "stop_sequence", "refusal"]


class ScenarioError(ValueError):
    """A scenario file is missing, unreadable or invalid."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class TextBlock(msgspec.Struct, tag="text", tag_field="type", frozen=True, kw_only=True):
    text: str


class ThinkingBlock(msgspec.Struct, tag="thinking", tag_field="type", frozen=True, kw_only=True):
    thinking: str


class ToolUseBlock(msgspec.Struct, tag="tool_use", tag_field="type", frozen=True, kw_only=True):
    name: str
    input: dict[str, Any]


Block = TextBlock | ThinkingBlock | ToolUseBlock


class ApiError(msgspec.Struct, frozen=True, kw_only=True):
    """An error answer, shaped like the Anthropic API's `{"type": "error", ...}` body."""

    status: int = 400
    type: str = "invalid_request_error"
    message: str

    def __post_init__(self) -> None:
        if not 400 <= self.status <= 599:
            raise ValueError(f"error status must be 4xx or 5xx, got {self.status}")


class Turn(msgspec.Struct, frozen=True, kw_only=True):
    """One assistant message, or an error, answering one request."""

    blocks: list[Block] = []
    error: ApiError | None = None
    # Default: "tool_use" when the turn calls a tool, else "end_turn".
    stop_reason: StopReason | None = None
    # Words per text/thinking delta; 1 gives many small deltas (progress tests).
    words_per_delta: int = 3
    # Overrides the scenario's pacing for this turn.
    tokens_per_second: float | None = None

    def __post_init__(self) -> None:
        if (self.error is None) == (not self.blocks):
            raise ValueError("a turn has either blocks or an error")
        if not 1 <= self.words_per_delta <= 1000:
            raise ValueError("words_per_delta must be within 1..1000")
        if self.tokens_per_second is not None and self.tokens_per_second <= 0:
            raise ValueError("tokens_per_second must be positive")

    @property
    def effective_stop_reason(self) -> StopReason:
        if self.stop_reason is not None:
            return self.stop_reason
        calls_tool = any(isinstance(b, ToolUseBlock) for b in self.blocks)
        return "tool_use" if calls_tool else "end_turn"


class Variant(msgspec.Struct, frozen=True, kw_only=True):
    """Turns to play when the request offers every tool in `requires_tools`."""

    requires_tools: list[str]
    turns: list[Turn]

    def __post_init__(self) -> None:
        if not self.turns:
            raise ValueError("a variant needs at least one turn")


class Scenario(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    description: str = ""
    # Lower-case words; a prompt containing one selects this scenario.
    keywords: list[str] = []
    # Baseline pacing at speed 1.0; turns may override it.
    tokens_per_second: float = 80.0
    variants: list[Variant] = []
    turns: list[Turn] = []

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"invalid scenario name {self.name!r}")
        if not self.turns and not self.variants:
            raise ValueError("a scenario needs turns or variants")
        if self.tokens_per_second <= 0:
            raise ValueError("tokens_per_second must be positive")
        if any(k != k.lower() for k in self.keywords):
            raise ValueError("keywords must be lower-case: prompts are matched lower-cased")

    def pick_turns(self, offered_tools: frozenset[str]) -> tuple[Variant | None, list[Turn]]:
        """The first variant whose tools are all offered, else the plain turns."""
        for variant in self.variants:
            if offered_tools.issuperset(variant.requires_tools):
                return variant, variant.turns
        if self.turns:
            return None, self.turns
        # No fallback turns: the last variant is the least demanding one.
        return self.variants[-1], self.variants[-1].turns


_decoder = json_decoder_of(Scenario)


def _decode(raw: bytes, path: str) -> Scenario:
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise ScenarioError(path, str(exc)) from exc


def _bundled() -> dict[str, Scenario]:
    found: dict[str, Scenario] = {}
    folder = resources.files("producer.scripted_model") / "scenarios"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            scenario = _decode(entry.read_bytes(), f"<bundled>/{entry.name}")
            found[scenario.name] = scenario
    return found


def load_scenarios(extra_dir: str | Path | None = None) -> dict[str, Scenario]:
    """Load the bundled scenarios, then `extra_dir/*.json`, which add or override by name.

    Raises `ScenarioError` naming the file when one is invalid, so a typo in a
    scenario fails at startup rather than in the middle of an agent run.
    """
    scenarios = _bundled()
    if extra_dir is not None:
        folder = Path(extra_dir)
        if not folder.is_dir():
            raise ScenarioError(str(folder), "not a directory")
        for path in sorted(folder.glob("*.json")):
            scenario = _decode(path.read_bytes(), str(path))
            if scenario.name in scenarios:
                logger.info("Scenario %r overridden by %s", scenario.name, path)
            scenarios[scenario.name] = scenario
    return scenarios
