"""The event envelope and every event type's `data`, as msgspec Structs.

Wire shape (SPEC "Event envelope"): an envelope with a `type` tag and a nested
`data` object whose schema depends on the type. Each concrete event is an
`Envelope` subclass tagged with its type string and typed `data`, so decoding
`Event` yields the right class and `match` works on it.

Schema evolution (see tests/test_events.py): new fields always get defaults,
fields are never retyped or renamed, and readers ignore fields they do not
know. A reader meeting a type it does not know decodes it with
`decode_loose` into `AnyEvent` (data left as a plain dict).
"""

from __future__ import annotations

import typing
from typing import Any, Final

import msgspec

ENVELOPE_VERSION: Final = 1

Json = dict[str, Any]


class _Data(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=False):
    """Base of every event's `data` payload."""


# -- run lifecycle --------------------------------------------------------------


class RunQueuedData(_Data, frozen=True, kw_only=True):
    prompt: str
    options: Json = {}
    truncated: bool = False


class RunStartedData(_Data, frozen=True, kw_only=True):
    model: str | None = None
    tools: list[str] = []
    cwd: str | None = None
    permission_mode: str | None = None
    claude_session_id: str | None = None


class RunCompletedData(_Data, frozen=True, kw_only=True):
    result: str | None = None
    subtype: str = "success"
    is_error: bool = False
    num_turns: int = 0
    duration_ms: int = 0
    duration_api_ms: int = 0
    total_cost_usd: float | None = None
    usage: Json | None = None
    stop_reason: str | None = None


class RunFailedData(_Data, frozen=True, kw_only=True):
    error: str
    kind: str
    # Carried when the CLI finished with an error result, so cost and turns
    # are not lost from metrics and the archive.
    num_turns: int | None = None
    duration_ms: int | None = None
    total_cost_usd: float | None = None
    usage: Json | None = None


class RunCancelledData(_Data, frozen=True, kw_only=True):
    reason: str = "cancelled"


# -- model output ---------------------------------------------------------------


class StatusData(_Data, frozen=True, kw_only=True):
    status: str | None = None


class MessageStartedData(_Data, frozen=True, kw_only=True):
    message_id: str | None = None
    model: str | None = None


class TextDeltaData(_Data, frozen=True, kw_only=True):
    index: int
    text: str


class TextCompletedData(_Data, frozen=True, kw_only=True):
    message_id: str | None = None
    text: str
    truncated: bool = False


class ThinkingDeltaData(_Data, frozen=True, kw_only=True):
    index: int | None = None
    text: str


class ThinkingCompletedData(_Data, frozen=True, kw_only=True):
    index: int | None = None
    text: str
    truncated: bool = False


class ToolStartedData(_Data, frozen=True, kw_only=True):
    tool_use_id: str
    name: str
    index: int | None = None
    server: bool = False


class ToolInputDeltaData(_Data, frozen=True, kw_only=True):
    tool_use_id: str
    partial_json: str


class ToolCalledData(_Data, frozen=True, kw_only=True):
    tool_use_id: str
    name: str
    input: Json = {}
    server: bool = False
    truncated: bool = False


class ToolResultData(_Data, frozen=True, kw_only=True):
    tool_use_id: str
    is_error: bool = False
    content: Any = None
    truncated: bool = False


class MessageCompletedData(_Data, frozen=True, kw_only=True):
    message_id: str | None = None
    stop_reason: str | None = None
    usage: Json | None = None


class UserMessageData(_Data, frozen=True, kw_only=True):
    text: str
    truncated: bool = False


class RateLimitData(_Data, frozen=True, kw_only=True):
    status: str
    resets_at: int | None = None
    utilization: float | None = None
    type: str | None = None


class _TaskData(_Data, frozen=True, kw_only=True):
    """Sub-agent task fields shared by task.started / task.progress / task.completed."""

    task_id: str
    description: str | None = None
    tool_use_id: str | None = None
    task_type: str | None = None
    status: str | None = None
    summary: str | None = None
    last_tool_name: str | None = None
    usage: Json | None = None


class TaskStartedData(_TaskData, frozen=True, kw_only=True):
    pass


class TaskProgressData(_TaskData, frozen=True, kw_only=True):
    pass


class TaskCompletedData(_TaskData, frozen=True, kw_only=True):
    pass


class SdkOtherData(_Data, frozen=True, kw_only=True, rename={"class_": "class"}):
    class_: str
    raw: Any = None
    truncated: bool = False


# -- the envelope ---------------------------------------------------------------


class Envelope(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Fields every event carries; each subclass adds its tag and typed `data`."""

    v: int = ENVELOPE_VERSION
    id: str
    session: str
    run: int
    seq: int
    ts: int
    parent_tool_use_id: str | None = None


class RunQueued(Envelope, tag="run.queued", frozen=True, kw_only=True):
    data: RunQueuedData


class RunStarted(Envelope, tag="run.started", frozen=True, kw_only=True):
    data: RunStartedData


class Status(Envelope, tag="status", frozen=True, kw_only=True):
    data: StatusData


class MessageStarted(Envelope, tag="message.started", frozen=True, kw_only=True):
    data: MessageStartedData


class TextDelta(Envelope, tag="text.delta", frozen=True, kw_only=True):
    data: TextDeltaData


class TextCompleted(Envelope, tag="text.completed", frozen=True, kw_only=True):
    data: TextCompletedData


class ThinkingDelta(Envelope, tag="thinking.delta", frozen=True, kw_only=True):
    data: ThinkingDeltaData


class ThinkingCompleted(Envelope, tag="thinking.completed", frozen=True, kw_only=True):
    data: ThinkingCompletedData


class ToolStarted(Envelope, tag="tool.started", frozen=True, kw_only=True):
    data: ToolStartedData


class ToolInputDelta(Envelope, tag="tool.input.delta", frozen=True, kw_only=True):
    data: ToolInputDeltaData


class ToolCalled(Envelope, tag="tool.called", frozen=True, kw_only=True):
    data: ToolCalledData


class ToolResult(Envelope, tag="tool.result", frozen=True, kw_only=True):
    data: ToolResultData


class MessageCompleted(Envelope, tag="message.completed", frozen=True, kw_only=True):
    data: MessageCompletedData


class UserMessage(Envelope, tag="user.message", frozen=True, kw_only=True):
    data: UserMessageData


class RateLimit(Envelope, tag="rate_limit", frozen=True, kw_only=True):
    data: RateLimitData


class TaskStarted(Envelope, tag="task.started", frozen=True, kw_only=True):
    data: TaskStartedData


class TaskProgress(Envelope, tag="task.progress", frozen=True, kw_only=True):
    data: TaskProgressData


class TaskCompleted(Envelope, tag="task.completed", frozen=True, kw_only=True):
    data: TaskCompletedData


class RunCompleted(Envelope, tag="run.completed", frozen=True, kw_only=True):
    data: RunCompletedData


class RunFailed(Envelope, tag="run.failed", frozen=True, kw_only=True):
    data: RunFailedData


class RunCancelled(Envelope, tag="run.cancelled", frozen=True, kw_only=True):
    data: RunCancelledData


class SdkOther(Envelope, tag="sdk.other", frozen=True, kw_only=True):
    data: SdkOtherData


Event = (
    RunQueued
    | RunStarted
    | Status
    | MessageStarted
    | TextDelta
    | TextCompleted
    | ThinkingDelta
    | ThinkingCompleted
    | ToolStarted
    | ToolInputDelta
    | ToolCalled
    | ToolResult
    | MessageCompleted
    | UserMessage
    | RateLimit
    | TaskStarted
    | TaskProgress
    | TaskCompleted
    | RunCompleted
    | RunFailed
    | RunCancelled
    | SdkOther
)

EventData = (
    RunQueuedData
    | RunStartedData
    | StatusData
    | MessageStartedData
    | TextDeltaData
    | TextCompletedData
    | ThinkingDeltaData
    | ThinkingCompletedData
    | ToolStartedData
    | ToolInputDeltaData
    | ToolCalledData
    | ToolResultData
    | MessageCompletedData
    | UserMessageData
    | RateLimitData
    | TaskStartedData
    | TaskProgressData
    | TaskCompletedData
    | RunCompletedData
    | RunFailedData
    | RunCancelledData
    | SdkOtherData
)

# The event type tables, derived from the union: type string -> envelope class -> data class.
EVENT_CLASSES: Final[dict[str, type[Envelope]]] = {
    cls.__struct_config__.tag: cls for cls in typing.get_args(Event)
}
TYPE_OF_DATA: Final[dict[type[_Data], str]] = {
    next(f.type for f in msgspec.structs.fields(cls) if f.name == "data"): tag
    for tag, cls in EVENT_CLASSES.items()
}
EVENT_TYPES: Final = frozenset(EVENT_CLASSES)
TERMINAL_TYPES: Final = frozenset({"run.completed", "run.failed", "run.cancelled"})


def type_of(event: Envelope) -> str:
    """The wire `type` of an envelope instance."""
    tag: str = type(event).__struct_config__.tag  # type: ignore[assignment]
    return tag


class AnyEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Any envelope, known type or not, with `data` left as plain JSON values.

    This is what readers that must survive newer producers decode into (the
    archiver, `tail`): an unknown type is kept, never dropped.
    """

    v: int = ENVELOPE_VERSION
    id: str
    session: str
    run: int
    seq: int
    ts: int
    type: str
    parent_tool_use_id: str | None = None
    data: Any = None


def make_event(
    data: EventData,
    *,
    id: str,
    session: str,
    run: int,
    seq: int,
    ts: int,
    parent_tool_use_id: str | None = None,
) -> Event:
    """Wrap `data` in the envelope of its event type."""
    cls = EVENT_CLASSES[TYPE_OF_DATA[type(data)]]
    event: Event = cls(  # type: ignore[call-arg,assignment]
        data=data,
        id=id,
        session=session,
        run=run,
        seq=seq,
        ts=ts,
        parent_tool_use_id=parent_tool_use_id,
    )
    return event
