"""Normalizer: real SDK objects, and transcripts recorded from the real CLI, to events."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest
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
from claude_agent_sdk._internal.message_parser import parse_message
from claude_agent_sdk.types import (
    ConversationResetMessage,
    RateLimitInfo,
    ServerToolResultBlock,
    ServerToolUseBlock,
    TaskNotificationMessage,
    TaskStartedMessage,
    TaskUpdatedMessage,
)

from agentcast.codec import encode
from agentcast.events import (
    TYPE_OF_DATA,
    MessageCompletedData,
    MessageStartedData,
    RateLimitData,
    RunCompletedData,
    RunFailedData,
    RunStartedData,
    SdkOtherData,
    TaskCompletedData,
    TaskProgressData,
    TaskStartedData,
    TextCompletedData,
    TextDeltaData,
    ThinkingCompletedData,
    ToolCalledData,
    ToolInputDeltaData,
    ToolResultData,
    ToolStartedData,
    UserMessageData,
)
from producer.normalize import Normalizer

TRANSCRIPTS = Path(__file__).parent.parent / "producer" / "traces"


def stream(event: dict, parent: str | None = None) -> StreamEvent:
    return StreamEvent(uuid="u", session_id="c", event=event, parent_tool_use_id=parent)


def test_a_streamed_tool_call_maps_to_started_deltas_called() -> None:
    n = Normalizer()
    out = []
    out += n.feed(stream({"type": "message_start", "message": {"id": "msg_1", "model": "m"}}))
    out += n.feed(
        stream(
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "tu_1", "name": "Bash", "input": {}},
            }
        )
    )
    out += n.feed(
        stream(
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"command":'},
            }
        )
    )
    out += n.feed(
        stream(
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '"ls"}'},
            }
        )
    )
    out += n.feed(stream({"type": "content_block_stop", "index": 1}))
    out += n.feed(
        AssistantMessage(
            content=[ToolUseBlock(id="tu_1", name="Bash", input={"command": "ls"})],
            model="m",
            message_id="msg_1",
        )
    )
    out += n.feed(
        stream(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use"},
                "usage": {"output_tokens": 7},
            }
        )
    )
    out += n.feed(stream({"type": "message_stop"}))
    assert [d.data for d in out] == [
        MessageStartedData(message_id="msg_1", model="m"),
        ToolStartedData(tool_use_id="tu_1", name="Bash", index=1),
        ToolInputDeltaData(tool_use_id="tu_1", partial_json='{"command":'),
        ToolInputDeltaData(tool_use_id="tu_1", partial_json='"ls"}'),
        ToolCalledData(tool_use_id="tu_1", name="Bash", input={"command": "ls"}),
        MessageCompletedData(
            message_id="msg_1", stop_reason="tool_use", usage={"output_tokens": 7}
        ),
    ]


def test_every_sdk_message_class_maps_and_nothing_is_dropped() -> None:
    n = Normalizer()
    cases = [
        (
            SystemMessage(
                subtype="init",
                data={
                    "model": "m",
                    "tools": ["Bash"],
                    "cwd": "/w",
                    "permissionMode": "acceptEdits",
                    "session_id": "cs",
                },
            ),
            [
                RunStartedData(
                    model="m",
                    tools=["Bash"],
                    cwd="/w",
                    permission_mode="acceptEdits",
                    claude_session_id="cs",
                )
            ],
        ),
        (
            stream(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "Hi"},
                }
            ),
            [TextDeltaData(index=0, text="Hi")],
        ),
        (
            AssistantMessage(
                content=[TextBlock(text="Hi"), ThinkingBlock(thinking="hmm", signature="s")],
                model="m",
                message_id="msg_2",
            ),
            [
                TextCompletedData(message_id="msg_2", text="Hi"),
                ThinkingCompletedData(index=1, text="hmm"),
            ],
        ),
        (
            AssistantMessage(
                content=[
                    ServerToolUseBlock(id="st", name="web_search", input={"q": "x"}),
                    ServerToolResultBlock(tool_use_id="st", content={"type": "r"}),
                ],
                model="m",
            ),
            [
                ToolCalledData(tool_use_id="st", name="web_search", input={"q": "x"}, server=True),
                ToolResultData(tool_use_id="st", content={"type": "r"}),
            ],
        ),
        (
            UserMessage(
                content=[ToolResultBlock(tool_use_id="tu", content="out", is_error=True)],
                parent_tool_use_id="parent",
            ),
            [ToolResultData(tool_use_id="tu", content="out", is_error=True)],
        ),
        (UserMessage(content="and now?"), [UserMessageData(text="and now?")]),
        (
            RateLimitEvent(
                rate_limit_info=RateLimitInfo(
                    status="allowed_warning",
                    resets_at=99,
                    rate_limit_type="five_hour",
                    utilization=0.9,
                ),
                uuid="u",
                session_id="c",
            ),
            [
                RateLimitData(
                    status="allowed_warning", resets_at=99, utilization=0.9, type="five_hour"
                )
            ],
        ),
        (
            TaskStartedMessage(
                subtype="task_started",
                data={},
                task_id="t1",
                description="sub",
                uuid="u",
                session_id="c",
                tool_use_id="tu",
            ),
            [TaskStartedData(task_id="t1", description="sub", tool_use_id="tu")],
        ),
        (
            TaskUpdatedMessage(
                subtype="task_updated",
                data={},
                task_id="t1",
                patch={"status": "completed"},
                status="completed",
            ),
            [TaskCompletedData(task_id="t1", status="completed")],
        ),
        (
            TaskNotificationMessage(
                subtype="task_notification",
                data={},
                task_id="t1",
                status="completed",
                output_file="f",
                summary="done",
                uuid="u",
                session_id="c",
            ),
            [TaskProgressData(task_id="t1", status="completed", summary="done")],
        ),
        (
            ResultMessage(
                subtype="success",
                duration_ms=5,
                duration_api_ms=4,
                is_error=False,
                num_turns=2,
                session_id="c",
                total_cost_usd=0.5,
                result="ok",
            ),
            [
                RunCompletedData(
                    result="ok", num_turns=2, duration_ms=5, duration_api_ms=4, total_cost_usd=0.5
                )
            ],
        ),
        (
            ResultMessage(
                subtype="error_max_turns",
                duration_ms=5,
                duration_api_ms=4,
                is_error=True,
                num_turns=9,
                session_id="c",
            ),
            [RunFailedData(error="error_max_turns", kind="max_turns", num_turns=9, duration_ms=5)],
        ),
    ]
    for message, expected in cases:
        assert [d.data for d in n.feed(message)] == expected, message
    # Sub-agent origin is kept.
    (draft,) = n.feed(
        UserMessage(
            content=[ToolResultBlock(tool_use_id="x", content="y")], parent_tool_use_id="parent"
        )
    )
    assert draft.parent_tool_use_id == "parent"


@pytest.mark.parametrize(
    "message",
    [
        ConversationResetMessage(new_conversation_id="n", uuid="u", session_id="c"),
        SystemMessage(subtype="compact_boundary", data={"trigger": "auto"}),
        stream(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "citations_delta", "citation": {}},
            }
        ),
        stream({"type": "brand_new_event", "x": 1}),
        object(),
    ],
)
def test_unknown_messages_become_sdk_other(message: object) -> None:
    (draft,) = Normalizer().feed(message)
    assert isinstance(draft.data, SdkOtherData)
    assert draft.data.class_ == type(message).__name__
    encode(draft.data)  # always encodable


def _replay(name: str) -> list:
    normalizer = Normalizer()
    drafts = []
    for line in (TRANSCRIPTS / name).read_text().splitlines():
        message = parse_message(json.loads(line))
        if message is not None:
            drafts.extend(normalizer.feed(message))
    return drafts


@pytest.mark.parametrize("name", sorted(p.name for p in TRANSCRIPTS.glob("*.jsonl")))
def test_recorded_cli_transcripts_normalize_consistently(name: str) -> None:
    drafts = _replay(name)
    types = [TYPE_OF_DATA[type(d.data)] for d in drafts]
    assert types[0] == "run.started"
    assert sum(t in ("run.completed", "run.failed") for t in types) == 1
    assert types[-1] in ("run.completed", "run.failed")
    for draft in drafts:
        encode(draft.data)
    # Streamed pieces add up to the whole: tool input JSON and text per message.
    inputs: dict[str, str] = defaultdict(str)
    for d in drafts:
        if isinstance(d.data, ToolInputDeltaData):
            inputs[d.data.tool_use_id] += d.data.partial_json
    for d in drafts:
        if isinstance(d.data, ToolCalledData) and d.data.tool_use_id in inputs:
            streamed_input = json.loads(inputs[d.data.tool_use_id] or "{}")
            # The CLI adds defaults (e.g. Edit's replace_all) to the final input.
            assert streamed_input.items() <= d.data.input.items()
    texts: dict[tuple[str | None, str | None, int], str] = defaultdict(str)
    message_of: dict[str | None, str | None] = {}
    completed: list[str] = []
    for d in drafts:
        if isinstance(d.data, MessageStartedData):
            message_of[d.parent_tool_use_id] = d.data.message_id
        if isinstance(d.data, TextDeltaData):
            key = (d.parent_tool_use_id, message_of.get(d.parent_tool_use_id), d.data.index)
            texts[key] += d.data.text
        if isinstance(d.data, TextCompletedData):
            completed.append(d.data.text)
    for streamed in texts.values():
        assert streamed in completed
    # Every tool call gets exactly one result.
    called = Counter(d.data.tool_use_id for d in drafts if isinstance(d.data, ToolCalledData))
    results = Counter(d.data.tool_use_id for d in drafts if isinstance(d.data, ToolResultData))
    assert called == results


def test_todo_plans_come_through_in_both_tool_variants() -> None:
    tasks = [d.data for d in _replay("coding_tasks.jsonl") if isinstance(d.data, ToolCalledData)]
    assert {"TaskCreate", "TaskUpdate"} <= {t.name for t in tasks}
    todos = [
        d.data for d in _replay("coding_todowrite.jsonl") if isinstance(d.data, ToolCalledData)
    ]
    writes = [t.input["todos"] for t in todos if t.name == "TodoWrite"]
    assert writes and all(item["status"] == "completed" for item in writes[-1])


def test_subagent_events_carry_their_parent_tool_call() -> None:
    drafts = _replay("subagent.jsonl")
    nested = [d for d in drafts if d.parent_tool_use_id]
    assert nested, "the sub-agent's events should be attributed"
    parents = {
        d.data.tool_use_id
        for d in drafts
        if isinstance(d.data, ToolCalledData) and not d.parent_tool_use_id
    }
    assert {d.parent_tool_use_id for d in nested} <= parents
    kinds = [TYPE_OF_DATA[type(d.data)] for d in drafts]
    assert kinds.count("task.started") == 1 and kinds.count("task.completed") == 1


def test_api_error_transcript_is_a_failed_run() -> None:
    last = _replay("api_error.jsonl")[-1].data
    assert isinstance(last, RunFailedData) and last.kind == "api_error" and last.error
