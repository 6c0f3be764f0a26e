"""Publish well-formed synthetic events straight to JetStream, for tests of readers."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from nats.js import JetStreamContext

from agentcast.codec import encode
from agentcast.envelope import envelope
from agentcast.events import (
    Event,
    EventData,
    MessageCompletedData,
    RunCompletedData,
    RunQueuedData,
    RunStartedData,
    TextDeltaData,
    ToolCalledData,
    ToolResultData,
    ToolStartedData,
    type_of,
)
from agentcast.subjects import event_subject


def build_events(
    session: str,
    datas: Iterable[EventData],
    *,
    run: int = 1,
    first_seq: int = 1,
    ts: int | None = None,
) -> list[Event]:
    """Events stamped now, or all at `ts` (for figures that must not depend on elapsed time)."""
    return [
        envelope(data, session=session, run=run, seq=first_seq + i, ts=ts)
        for i, data in enumerate(datas)
    ]


def simple_run(n_text: int = 5, prompt: str = "hello") -> list[EventData]:
    """A plausible small run: queued, started, text deltas, one tool, completed."""
    datas: list[EventData] = [
        RunQueuedData(prompt=prompt),
        RunStartedData(model="scripted", tools=["Bash"], cwd="/tmp"),
    ]
    datas += [TextDeltaData(index=0, text=f"word{i} ") for i in range(n_text)]
    datas += [
        ToolStartedData(tool_use_id="toolu_1", name="Bash", index=1),
        ToolCalledData(tool_use_id="toolu_1", name="Bash", input={"command": "echo hi"}),
        ToolResultData(tool_use_id="toolu_1", content="hi"),
        MessageCompletedData(
            message_id="msg_1", stop_reason="end_turn", usage={"output_tokens": 9}
        ),
        RunCompletedData(result="done", num_turns=1, total_cost_usd=0.001),
    ]
    return datas


async def publish_events(js: JetStreamContext, events: Iterable[Event]) -> list[int]:
    """Publish in order with dedupe ids; returns the stream sequences (cursors)."""
    seqs = []
    for event in events:
        ack = await js.publish(
            event_subject(event.session, type_of(event)),
            encode(event),
            headers={"Nats-Msg-Id": event.id},
        )
        seqs.append(ack.seq)
    return seqs


def unique_session(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"
