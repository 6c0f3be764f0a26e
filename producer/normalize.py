"""SDK message -> events: a pure mapping from `claude_agent_sdk` messages to event data.

`Normalizer` holds the little state a stream needs (which content block index
is which tool call, the current message id) and does no I/O. It returns
`Draft`s: the event data plus the sub-agent it came from; the publisher adds
the envelope (id, seq, ts, run).

What maps where:
- SystemMessage `init` -> run.started; `status` -> status; task messages -> task.*
- StreamEvent (raw API events): message_start -> message.started;
  content_block_start of a tool -> tool.started; text/thinking/input_json
  deltas -> text.delta / thinking.delta / tool.input.delta; message_delta ->
  message.completed. Structural events (ping, content_block_stop,
  message_stop, signature_delta, a text/thinking block start) carry nothing a
  viewer needs and produce no event; any other raw event becomes sdk.other.
- AssistantMessage blocks -> text.completed, thinking.completed, tool.called
  (server tools too, with `server: true`), tool.result for server-tool results.
- UserMessage tool results -> tool.result; user text -> user.message.
- ResultMessage -> run.completed, or run.failed when the CLI reports an error.
- RateLimitEvent -> rate_limit.
- Anything else (new SDK classes, unknown system subtypes) -> sdk.other with
  the class name and the raw message: nothing is dropped.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import msgspec
from claude_agent_sdk import (
    AssistantMessage,
    RateLimitEvent,
    ResultMessage,
    StreamEvent,
    SystemMessage,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
)
from claude_agent_sdk.types import (
    ServerToolResultBlock,
    ServerToolUseBlock,
    TaskNotificationMessage,
    TaskProgressMessage,
    TaskStartedMessage,
    TaskUpdatedMessage,
)

from agentcast.events import (
    EventData,
    MessageCompletedData,
    MessageStartedData,
    RateLimitData,
    RunCompletedData,
    RunFailedData,
    RunStartedData,
    SdkOtherData,
    StatusData,
    TaskCompletedData,
    TaskProgressData,
    TaskStartedData,
    TextCompletedData,
    TextDeltaData,
    ThinkingCompletedData,
    ThinkingDeltaData,
    ToolCalledData,
    ToolInputDeltaData,
    ToolResultData,
    ToolStartedData,
    UserMessageData,
)

_TERMINAL_TASK_STATUSES = frozenset({"completed", "failed", "stopped", "killed"})
# Raw stream events that only frame what the mapped events already say.
_STRUCTURAL_STREAM_EVENTS = frozenset({"ping", "content_block_stop", "message_stop"})


class Draft(NamedTuple):
    """An event before its envelope: what happened, and in which sub-agent."""

    data: EventData
    parent_tool_use_id: str | None = None


class _Block(NamedTuple):
    kind: str
    tool_use_id: str | None


@dataclasses.dataclass
class _StreamState:
    """Per (sub-)agent stream: the message being streamed and its blocks by index."""

    message_id: str | None = None
    blocks: dict[int, _Block] = dataclasses.field(default_factory=dict)


class Normalizer:
    """Maps each SDK message to zero or more event drafts, in order."""

    def __init__(self) -> None:
        self._streams: dict[str | None, _StreamState] = {}
        # The CLI may report a task's end twice (task_updated, task_notification):
        # the first is task.completed, a later one only task.progress.
        self._finished_tasks: set[str] = set()

    def feed(self, message: object) -> list[Draft]:
        match message:
            case StreamEvent():
                return self._stream_event(message)
            case AssistantMessage():
                return self._assistant(message)
            case UserMessage():
                return self._user(message)
            case TaskStartedMessage() | TaskProgressMessage() | TaskNotificationMessage():
                return [Draft(self._once_completed(_task(message)))]
            case TaskUpdatedMessage():
                return [Draft(self._once_completed(_task_updated(message)))]
            case SystemMessage(subtype="init", data=data):
                return [Draft(_run_started(data))]
            case SystemMessage(subtype="status", data=data):
                return [Draft(StatusData(status=_str_or_none(data.get("status"))))]
            case ResultMessage():
                return [Draft(_result(message))]
            case RateLimitEvent(rate_limit_info=info):
                return [
                    Draft(
                        RateLimitData(
                            status=info.status,
                            resets_at=info.resets_at,
                            utilization=info.utilization,
                            type=info.rate_limit_type,
                        )
                    )
                ]
            case _:
                return [Draft(sdk_other(message), getattr(message, "parent_tool_use_id", None))]

    def _once_completed(self, data: EventData) -> EventData:
        if isinstance(data, TaskCompletedData):
            if data.task_id in self._finished_tasks:
                return TaskProgressData(**msgspec.structs.asdict(data))
            self._finished_tasks.add(data.task_id)
        return data

    # -- streaming -----------------------------------------------------------------

    def _stream_event(self, message: StreamEvent) -> list[Draft]:
        parent = message.parent_tool_use_id
        state = self._streams.setdefault(parent, _StreamState())
        raw = message.event
        kind = raw.get("type")
        data: EventData | None
        match kind:
            case "message_start":
                msg = raw.get("message") or {}
                state.message_id = msg.get("id")
                state.blocks.clear()
                data = MessageStartedData(message_id=state.message_id, model=msg.get("model"))
            case "content_block_start":
                data = self._block_start(state, raw)
            case "content_block_delta":
                data = self._block_delta(state, raw)
                if data is None:
                    delta_type = (raw.get("delta") or {}).get("type")
                    if delta_type == "signature_delta":
                        return []
                    data = sdk_other(message)
            case "message_delta":
                delta = raw.get("delta") or {}
                data = MessageCompletedData(
                    message_id=state.message_id,
                    stop_reason=delta.get("stop_reason"),
                    usage=raw.get("usage"),
                )
            case _ if kind in _STRUCTURAL_STREAM_EVENTS:
                return []
            case _:
                data = sdk_other(message)
        return [] if data is None else [Draft(data, parent)]

    def _block_start(self, state: _StreamState, raw: dict[str, Any]) -> EventData | None:
        index = int(raw.get("index", 0))
        block = raw.get("content_block") or {}
        block_type = block.get("type", "")
        if block_type in ("tool_use", "server_tool_use", "mcp_tool_use"):
            tool_use_id = str(block.get("id", ""))
            state.blocks[index] = _Block(block_type, tool_use_id)
            return ToolStartedData(
                tool_use_id=tool_use_id,
                name=str(block.get("name", "")),
                index=index,
                server=block_type != "tool_use",
            )
        state.blocks[index] = _Block(block_type, None)
        if block_type in ("text", "thinking", "redacted_thinking"):
            # Their content arrives as deltas and again, whole, in the AssistantMessage.
            return None
        return SdkOtherData(class_="StreamEvent", raw=raw)

    def _block_delta(self, state: _StreamState, raw: dict[str, Any]) -> EventData | None:
        index = int(raw.get("index", 0))
        delta = raw.get("delta") or {}
        match delta.get("type"):
            case "text_delta":
                return TextDeltaData(index=index, text=str(delta.get("text", "")))
            case "thinking_delta":
                return ThinkingDeltaData(index=index, text=str(delta.get("thinking", "")))
            case "input_json_delta":
                block = state.blocks.get(index)
                tool_use_id = block.tool_use_id if block and block.tool_use_id else ""
                return ToolInputDeltaData(
                    tool_use_id=tool_use_id, partial_json=str(delta.get("partial_json", ""))
                )
        return None

    # -- whole messages ------------------------------------------------------------

    def _assistant(self, message: AssistantMessage) -> list[Draft]:
        parent = message.parent_tool_use_id
        drafts: list[Draft] = []
        for index, block in enumerate(message.content):
            data: EventData
            match block:
                case TextBlock(text=text):
                    data = TextCompletedData(message_id=message.message_id, text=text)
                case ThinkingBlock(thinking=text):
                    data = ThinkingCompletedData(index=index, text=text)
                case ToolUseBlock(id=tool_use_id, name=name, input=tool_input):
                    data = ToolCalledData(tool_use_id=tool_use_id, name=name, input=tool_input)
                case ServerToolUseBlock(id=tool_use_id, name=name, input=tool_input):
                    data = ToolCalledData(
                        tool_use_id=tool_use_id, name=name, input=tool_input, server=True
                    )
                case ServerToolResultBlock(tool_use_id=tool_use_id, content=content):
                    data = ToolResultData(tool_use_id=tool_use_id, content=content)
                case ToolResultBlock():
                    data = _tool_result(block)
                case _:
                    data = sdk_other(block)
            drafts.append(Draft(data, parent))
        if message.error and not drafts:
            drafts.append(Draft(sdk_other(message), parent))
        return drafts

    def _user(self, message: UserMessage) -> list[Draft]:
        parent = message.parent_tool_use_id
        if isinstance(message.content, str):
            return [Draft(UserMessageData(text=message.content), parent)]
        drafts: list[Draft] = []
        for block in message.content:
            match block:
                case ToolResultBlock():
                    drafts.append(Draft(_tool_result(block), parent))
                case TextBlock(text=text):
                    drafts.append(Draft(UserMessageData(text=text), parent))
                case _:
                    drafts.append(Draft(sdk_other(block), parent))
        return drafts


# -- pure helpers --------------------------------------------------------------------


def sdk_other(obj: object) -> SdkOtherData:
    """The catch-all: the object's class and its fields as plain JSON values."""
    return SdkOtherData(class_=type(obj).__name__, raw=_plain(obj))


def _plain(obj: object) -> Any:
    try:
        return msgspec.to_builtins(obj, str_keys=True, enc_hook=repr)
    except (TypeError, ValueError):
        return repr(obj)


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _tool_result(block: ToolResultBlock) -> ToolResultData:
    return ToolResultData(
        tool_use_id=block.tool_use_id, is_error=bool(block.is_error), content=block.content
    )


def _run_started(data: dict[str, Any]) -> RunStartedData:
    tools = data.get("tools")
    return RunStartedData(
        model=_str_or_none(data.get("model")),
        tools=[str(t) for t in tools] if isinstance(tools, list) else [],
        cwd=_str_or_none(data.get("cwd")),
        permission_mode=_str_or_none(data.get("permissionMode")),
        claude_session_id=_str_or_none(data.get("session_id")),
    )


def _task(message: TaskStartedMessage | TaskProgressMessage | TaskNotificationMessage) -> EventData:
    common: dict[str, Any] = {
        "task_id": message.task_id,
        "tool_use_id": message.tool_use_id,
    }
    match message:
        case TaskStartedMessage():
            return TaskStartedData(
                **common, description=message.description, task_type=message.task_type
            )
        case TaskProgressMessage():
            return TaskProgressData(
                **common,
                description=message.description,
                last_tool_name=message.last_tool_name,
                usage=dict(message.usage),
                status="running",
            )
        case TaskNotificationMessage():
            return TaskCompletedData(
                **common,
                status=message.status,
                summary=message.summary,
                usage=dict(message.usage) if message.usage else None,
            )


def _task_updated(message: TaskUpdatedMessage) -> EventData:
    patch = message.patch
    fields: dict[str, Any] = {
        "task_id": message.task_id,
        "status": message.status,
        "summary": _str_or_none(patch.get("result") or patch.get("error")),
        "description": _str_or_none(patch.get("description")),
    }
    if message.status in _TERMINAL_TASK_STATUSES:
        return TaskCompletedData(**fields)
    return TaskProgressData(**fields)


def _result(message: ResultMessage) -> EventData:
    if message.is_error:
        error = message.result or "; ".join(message.errors or []) or message.subtype
        # "error_max_turns" -> "max_turns"; an API failure reports subtype "success".
        kind = (
            message.subtype.removeprefix("error_")
            if message.subtype.startswith("error_")
            else "api_error"
        )
        return RunFailedData(
            error=error,
            kind=kind,
            num_turns=message.num_turns,
            duration_ms=message.duration_ms,
            total_cost_usd=message.total_cost_usd,
            usage=message.usage,
        )
    return RunCompletedData(
        result=message.result,
        subtype=message.subtype,
        is_error=message.is_error,
        num_turns=message.num_turns,
        duration_ms=message.duration_ms,
        duration_api_ms=message.duration_api_ms,
        total_cost_usd=message.total_cost_usd,
        usage=message.usage,
        stop_reason=message.stop_reason,
    )
