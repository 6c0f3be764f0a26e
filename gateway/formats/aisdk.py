"""`format=ai-sdk`: the Vercel AI SDK UI message stream v1, one stream per run.

A stream is one assistant response: `start` ... `finish`, then `data: [DONE]`.
It begins at the first run after the client's cursor (or, when the cursor is
inside a run, continues that run exactly: the chunks of the events after it),
and ends with that run. Only chunk types that ai 6.x accepts are sent (v7's
`custom`, `reset-step`, `finishReason: "interrupted"` are not). agentcast
extras travel as `data-*` parts. A sub-agent's traffic is folded into one
`data-subagent` part (id = its parent tool_use_id), replaced as it grows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from typing import Any, Final

from agentcast.codec import encode
from gateway.formats.items import Item, sse_data

Json = dict[str, Any]
DONE: Final = b"[DONE]"
FINISH_REASONS: Final = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                         "tool_use": "tool-calls", "refusal": "content-filter"}  # fmt: skip
_TRANSIENT: Final = {"status", "rate_limit"}


@dataclasses.dataclass
class _Subagent:
    prompt: str | None = None
    texts: list[str] = dataclasses.field(default_factory=list)
    tools: list[Json] = dataclasses.field(default_factory=list)

    def data(self, tool_use_id: str) -> Json:
        out: Json = {"toolUseId": tool_use_id, "text": "\n\n".join(self.texts), "tools": self.tools}
        if self.prompt is not None:
            out["prompt"] = self.prompt
        return out


class AiSdkTranslator:
    """UI message chunks for one run; `run` pins which (None: the first after the cursor)."""

    __slots__ = ("_message_id", "_message_part", "_parts", "_run", "_session", "_step",
                 "_subagents", "_tools", "done")  # fmt: skip

    def __init__(self, run: int | None = None) -> None:
        self._run = run
        self._reset()

    def _reset(self) -> None:
        self.done = False
        self._session: str | None = None
        self._message_id: str | None = None
        """Set while a run streams."""
        self._parts: dict[str, str] = {}
        """Open text/reasoning parts: part id -> "text" | "reasoning"."""
        self._message_part: str | None = None
        self._step = False
        self._tools: dict[str, str] = {}
        """Tool calls this stream has announced: toolCallId -> toolName."""
        self._subagents: dict[str, _Subagent] = {}

    def prelude(self, cursor: str) -> list[bytes]:
        return []  # a resumed stream continues the client's own message

    def lineage(self) -> Hashable | None:
        # Streaming a run read from its start: what follows depends on that run alone.
        if self._message_id is None or self.done:
            return None
        return ("ai-sdk", self._message_id)

    def feed(self, item: Item, *, quiet: bool) -> list[bytes]:
        if self.done:
            return []
        chunks = self._chunks(item)
        if quiet:
            if self.done:  # the run before the client's cursor ended: stream the next one
                self._reset()
            return []
        if not chunks:
            return []
        out = [sse_data(item.cursor, encode(c)) for c in chunks]
        if self.done:
            out.append(sse_data(item.cursor, DONE))
        return out

    def _chunks(self, item: Item) -> list[Json]:
        env = item.event
        kind, data = env.type, item.data
        if self._message_id is None:
            if kind != "run.queued" or (self._run is not None and env.run != self._run):
                return []
            self._session = env.session
            self._message_id = f"{env.session}:{env.run}"
            return [{"type": "start", "messageId": self._message_id,
                     "messageMetadata": {"session": env.session, "run": env.run}}]  # fmt: skip
        if env.session != self._session:
            return []
        sub = env.parent_tool_use_id
        if sub is not None:
            return self._subagent(sub, kind, data)
        match kind:
            case "run.started":
                meta = {k: data.get(k) for k in ("model", "claude_session_id") if data.get(k)}
                return [{"type": "message-metadata", "messageMetadata": meta}]
            case "message.started":
                out = self._close_parts()
                if self._step:
                    out.append({"type": "finish-step"})
                self._step = True
                self._message_part = str(data.get("message_id") or item.cursor)
                return [*out, {"type": "start-step"}]
            case "text.delta" | "thinking.delta":
                return self._delta(kind, data)
            case "text.completed" | "thinking.completed":
                return self._completed(kind, data)
            case "tool.started":
                call_id, name = str(data.get("tool_use_id")), str(data.get("name", ""))
                self._tools[call_id] = name
                return [{"type": "tool-input-start", "toolCallId": call_id, "toolName": name,
                         "dynamic": True}]  # fmt: skip
            case "tool.input.delta":
                call_id, delta = str(data.get("tool_use_id")), data.get("partial_json") or ""
                if call_id not in self._tools or not delta:
                    return []
                return [{"type": "tool-input-delta", "toolCallId": call_id,
                         "inputTextDelta": delta}]  # fmt: skip
            case "tool.called":
                call_id, name = str(data.get("tool_use_id")), str(data.get("name", ""))
                self._tools[call_id] = name
                return [{"type": "tool-input-available", "toolCallId": call_id, "toolName": name,
                         "input": data.get("input") or {}, "dynamic": True}]  # fmt: skip
            case "tool.result":
                return self._tool_result(data)
            case "message.completed":
                out = self._close_parts()
                if self._step:
                    self._step = False
                    out.append({"type": "finish-step"})
                return out
            case "run.completed" | "run.failed" | "run.cancelled":
                return self._end(kind, data)
            case "sdk.other":
                return []  # raw SDK messages have no place in a UI message
            case "task.started" | "task.progress" | "task.completed":
                return [{"type": "data-task", "id": str(data.get("task_id")), "data": data}]
            case _:
                name = kind.replace(".", "_")
                chunk: Json = {"type": f"data-{name}", "data": data}
                if kind in _TRANSIENT:
                    chunk["transient"] = True
                else:
                    chunk["id"] = env.id
                return [chunk]

    def _part_id(self, kind: str, data: Json) -> str:
        prefix = "reasoning" if kind.startswith("thinking") else "text"
        return f"{self._message_part or self._message_id}:{prefix}:{data.get('index', 0)}"

    def _delta(self, kind: str, data: Json) -> list[Json]:
        part = self._part_id(kind, data)
        prefix = "reasoning" if kind.startswith("thinking") else "text"
        out: list[Json] = []
        if part not in self._parts:
            self._parts[part] = prefix
            out.append({"type": f"{prefix}-start", "id": part})
        out.append({"type": f"{prefix}-delta", "id": part, "delta": str(data.get("text", ""))})
        return out

    def _completed(self, kind: str, data: Json) -> list[Json]:
        prefix = "reasoning" if kind.startswith("thinking") else "text"
        open_parts = [p for p, k in self._parts.items() if k == prefix]
        if not open_parts:  # not streamed: the whole block at once
            return [*self._delta(kind, data), *self._close_parts(prefix)]
        return self._close_parts(prefix)

    def _close_parts(self, prefix: str | None = None) -> list[Json]:
        closing = [p for p, k in self._parts.items() if prefix is None or k == prefix]
        return [{"type": f"{self._parts.pop(p)}-end", "id": p} for p in closing]

    def _tool_result(self, data: Json) -> list[Json]:
        call_id = str(data.get("tool_use_id"))
        if call_id not in self._tools:
            return []  # the client never saw this call: a result for it would be fatal
        if data.get("is_error"):
            text = data.get("content")
            return [{"type": "tool-output-error", "toolCallId": call_id, "dynamic": True,
                     "errorText": text if isinstance(text, str) else str(encode(text), "utf-8")}]  # fmt: skip
        return [{"type": "tool-output-available", "toolCallId": call_id, "dynamic": True,
                 "output": data.get("content")}]  # fmt: skip

    def _subagent(self, sub: str, kind: str, data: Json) -> list[Json]:
        state = self._subagents.setdefault(sub, _Subagent())
        if kind == "user.message":
            state.prompt = str(data.get("text", ""))
        elif kind == "text.completed":
            state.texts.append(str(data.get("text", "")))
        elif kind == "tool.called":
            state.tools.append({"toolCallId": data.get("tool_use_id"), "name": data.get("name")})
        elif kind == "tool.result":
            for tool in state.tools:
                if tool["toolCallId"] == data.get("tool_use_id"):
                    tool["isError"] = bool(data.get("is_error"))
        else:
            return []
        return [{"type": "data-subagent", "id": sub, "data": state.data(sub)}]

    def _end(self, kind: str, data: Json) -> list[Json]:
        self.done = True
        out = self._close_parts()
        if self._step:
            self._step = False
            out.append({"type": "finish-step"})
        if kind == "run.cancelled":
            return [*out, {"type": "abort", "reason": str(data.get("reason") or "cancelled")}]
        if kind == "run.failed" or data.get("is_error"):
            error = data.get("error") or data.get("result") or data.get("subtype") or kind
            return [*out, {"type": "error", "errorText": str(error)},
                    {"type": "finish", "finishReason": "error"}]  # fmt: skip
        meta = {k: data.get(k) for k in ("usage", "total_cost_usd", "num_turns", "duration_ms",
                                          "stop_reason") if data.get(k) is not None}  # fmt: skip
        reason = FINISH_REASONS.get(str(data.get("stop_reason")), "stop" if data.get("stop_reason")
                                    is None else "other")  # fmt: skip
        return [*out, {"type": "finish", "finishReason": reason, "messageMetadata": meta}]
