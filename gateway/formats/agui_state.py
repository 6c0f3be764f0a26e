"""What an AG-UI stream must remember of a run: open entities per lane, and the transcript.

A lane is the top-level agent (None) or a sub-agent (its parent tool_use_id,
which is the AG-UI `subagentRunId`). The transcript (messages so far, for a
MESSAGES_SNAPSHOT) is only kept while replaying up to a joining client's
cursor; afterwards nobody needs it.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Final

Json = dict[str, Any]

PROTOCOL_VERSION: Final = "1.0"


def event(kind: str, **fields: Any) -> Json:
    """An AG-UI event; fields that are None are left out (AG-UI has no nulls)."""
    return {"type": kind, **{k: v for k, v in fields.items() if v is not None}}


def result_text(content: Any) -> str:
    """A tool result's content as AG-UI text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and "text" in p for p in content):
        return "".join(str(p["text"]) for p in content)
    return "" if content is None else json.dumps(content)


def token_usage(usage: Json | None) -> list[Json] | None:
    """Anthropic usage as AG-UI TokenUsage; AG-UI's inputTokens include the cache parts."""
    if not usage:
        return None
    fresh = int(usage.get("input_tokens") or 0)
    cached = int(usage.get("cache_read_input_tokens") or 0)
    written = int(usage.get("cache_creation_input_tokens") or 0)
    output = int(usage.get("output_tokens") or 0)
    total_in = fresh + cached + written
    return [{"provider": "anthropic", "inputTokens": total_in, "outputTokens": output,
             "totalTokens": total_in + output, "cachedInputTokens": cached,
             "cacheWriteInputTokens": written}]  # fmt: skip


def open_reasoning(message_id: str, key: str | None) -> list[Json]:
    return [event("REASONING_START", messageId=message_id, subagentRunId=key),
            event("REASONING_MESSAGE_START", messageId=message_id, role="reasoning",
                   subagentRunId=key)]  # fmt: skip


def tool_start(call_id: str, tool: Tool) -> Json:
    return event("TOOL_CALL_START", toolCallId=call_id, toolCallName=tool.name,
                  parentMessageId=tool.parent_message_id, subagentRunId=tool.lane)  # fmt: skip


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

    def reopen(self) -> list[Json]:
        """What a client joining now needs: RUN_STARTED, MESSAGES_SNAPSHOT (the transcript,
        then dropped), and a START (with what it has so far) for everything still open."""
        out: list[Json] = []
        out += [self.started,
                event("MESSAGES_SNAPSHOT", messages=self.transcript.snapshot()
                       if self.transcript else [])]  # fmt: skip
        self.transcript = None
        out += self.subagents.values()
        for key, lane in self.lanes.items():
            if lane.step is not None:
                out.append(event("STEP_STARTED", stepName=lane.step, subagentRunId=key))
            if lane.reasoning is not None:
                out += open_reasoning(lane.reasoning, key)
                out.append(event("REASONING_MESSAGE_CONTENT", messageId=lane.reasoning,
                                  delta="".join(lane.reasoning_parts), subagentRunId=key))  # fmt: skip
            if lane.text is not None:
                out.append(event("TEXT_MESSAGE_START", messageId=lane.text,
                                  role="assistant", subagentRunId=key))  # fmt: skip
                out.append(event("TEXT_MESSAGE_CONTENT", messageId=lane.text,
                                  delta="".join(lane.text_parts), subagentRunId=key))  # fmt: skip
        for call_id, tool in self.tools.items():
            out.append(tool_start(call_id, tool))
            if tool.args:
                out.append(event("TOOL_CALL_ARGS", toolCallId=call_id,
                                  delta="".join(tool.args), subagentRunId=tool.lane))  # fmt: skip
        return out
