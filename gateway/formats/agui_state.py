"""What an AG-UI stream must remember of a run: open entities per lane, and the transcript.

A lane is the top-level agent (None) or a sub-agent (its parent tool_use_id,
which is the AG-UI `subagentRunId`). The transcript (messages so far, for a
MESSAGES_SNAPSHOT) is only kept while replaying up to a joining client's
cursor; afterwards nobody needs it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

Json = dict[str, Any]


@dataclasses.dataclass
class Lane:
    message_id: str | None = None
    step: str | None = None
    text: str | None = None
    """messageId of the open text message."""
    text_parts: list[str] = dataclasses.field(default_factory=list)
    reasoning: str | None = None
    reasoning_parts: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Tool:
    name: str
    lane: str | None
    parent_message_id: str | None
    args: list[str] = dataclasses.field(default_factory=list)


class Transcript:
    """AG-UI messages of a run so far, in first-appearance order."""

    def __init__(self) -> None:
        self.messages: dict[str, Json] = {}

    def add(self, message: Json) -> None:
        self.messages[message["id"]] = message

    def assistant(self, message_id: str, lane: str | None) -> Json:
        msg = self.messages.get(message_id)
        if msg is None:
            msg = {"id": message_id, "role": "assistant"}
            if lane is not None:
                msg["subagentRunId"] = lane
            self.messages[message_id] = msg
        return msg

    def text(self, message_id: str, lane: str | None, text: str) -> None:
        msg = self.assistant(message_id, lane)
        msg["content"] = msg.get("content", "") + text

    def tool_call(self, message_id: str, lane: str | None, call_id: str, tool: Tool) -> None:
        msg = self.assistant(message_id, lane)
        call = {"id": call_id, "type": "function",
                "function": {"name": tool.name, "arguments": "".join(tool.args)}}  # fmt: skip
        msg.setdefault("toolCalls", []).append(call)

    def snapshot(self) -> list[Json]:
        return list(self.messages.values())


@dataclasses.dataclass
class Run:
    thread_id: str
    run_id: str
    started: Json
    """The RUN_STARTED event, re-sent to a client joining mid-run."""
    lanes: dict[str | None, Lane] = dataclasses.field(default_factory=dict)
    tools: dict[str, Tool] = dataclasses.field(default_factory=dict)
    subagents: dict[str, Json] = dataclasses.field(default_factory=dict)
    """Active sub-agents: subagentRunId -> its SUBAGENT_STARTED event."""
    finished_subagents: set[str] = dataclasses.field(default_factory=set)
    tasks: dict[str, str] = dataclasses.field(default_factory=dict)
    """task_id -> the sub-agent's tool_use_id (task.completed may leave it out)."""
    transcript: Transcript | None = None

    def lane(self, key: str | None) -> Lane:
        lane = self.lanes.get(key)
        if lane is None:
            lane = self.lanes[key] = Lane()
        return lane
