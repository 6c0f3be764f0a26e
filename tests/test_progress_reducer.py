"""The progress reducer, pure: percent from plans and estimates, totals, timings, states."""

from __future__ import annotations

import msgspec
import pytest

from agentcast.codec import encode
from agentcast.events import (
    AnyEvent,
    Event,
    EventData,
    MessageCompletedData,
    MessageStartedData,
    RunCancelledData,
    RunCompletedData,
    RunFailedData,
    RunQueuedData,
    RunStartedData,
    TextCompletedData,
    TextDeltaData,
    ToolCalledData,
    ToolResultData,
)
from agentcast.progress import ProgressSnapshot
from consumers.progress.reducer import ESTIMATE_CEILING, SessionState, apply, new_state, snapshot
from tests.support.events import build_events
from tests.support.progress import snapshots_after_each
from tests.support.transcript_events import transcript_events

SPEC_FIELDS = [
    "session",
    "state",
    "run",
    "turns",
    "tool_calls",
    "tool_errors",
    "text_chars",
    "tokens",
    "cost_usd",
    "started_at",
    "updated_at",
    "duration_ms",
    "ttft_ms",
    "activity",
    "percent",
    "percent_source",
    "last_seq",
    "eta_ms",
    "percent_confidence",
]


_AT = 1_700_000_000_000_000_000
"""One timestamp for every event where exact steps are asserted: the plan's share, with no
time-weighting inside an item (stamped as built, a loaded machine moved 0.0 to 0.1)."""


def _steps(snaps: list[ProgressSnapshot], source: str) -> list[float]:
    values = [s.percent for s in snaps if s.percent_source == source]
    return [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]


def _todo(content: str, status: str) -> dict[str, str]:
    return {"content": content, "status": status, "activeForm": content + "ing"}


def _call(tool_id: str, name: str, tool_input: dict[str, object]) -> ToolCalledData:
    return ToolCalledData(tool_use_id=tool_id, name=name, input=tool_input)


def test_todowrite_percent_steps_with_the_list_stays_below_100_then_ends_at_100() -> None:
    lists = [
        ["pending", "pending", "pending", "pending"],
        ["completed", "in_progress", "pending", "pending"],
        ["completed", "completed", "completed", "in_progress"],
        ["completed", "completed", "completed", "completed"],
    ]
    datas: list[EventData] = [RunQueuedData(prompt="plan"), RunStartedData()]
    for i, statuses in enumerate(lists):
        todos = [_todo(f"step {n}", st) for n, st in enumerate(statuses)]
        datas += [
            _call(f"t{i}", "TodoWrite", {"todos": todos}),
            ToolResultData(tool_use_id=f"t{i}", content="ok"),
        ]
    datas.append(RunCompletedData(num_turns=4))
    snaps = snapshots_after_each(build_events("s_todo", datas, ts=_AT))
    # Instant events: no item took measurable time, so the items weigh alike.
    steps = _steps(snaps, "todos")
    assert steps[:3] == [0.0, 25.0, 75.0] and 75.0 < steps[3] <= ESTIMATE_CEILING
    assert (snaps[-1].percent, snaps[-1].percent_source, snaps[-1].state) == (
        100.0,
        "final",
        "completed",
    )


def test_task_tools_percent_follows_creates_updates_and_deletes() -> None:
    datas: list[EventData] = [RunQueuedData(prompt="tasks")]
    for n in (1, 2, 3):
        datas += [
            _call(
                f"c{n}",
                "TaskCreate",
                {"subject": f"task {n}", "description": "d", "activeForm": "doing"},
            ),
            ToolResultData(
                tool_use_id=f"c{n}", content=f"Task #{n} created successfully: task {n}"
            ),
        ]
    for n, (task, status) in enumerate(
        [("1", "in_progress"), ("1", "completed"), ("3", "deleted"), ("2", "completed")]
    ):
        datas.append(_call(f"u{n}", "TaskUpdate", {"taskId": task, "status": status}))
    datas.append(RunCompletedData())
    snaps = snapshots_after_each(build_events("s_task", datas, ts=_AT))
    # 0 of 3; 1 of 3; 1 of 2 once task 3 is deleted; 2 of 2.
    steps = _steps(snaps, "todos")
    assert steps[:3] == [0.0, 33.3, 50.0] and 50.0 < steps[3] <= ESTIMATE_CEILING
    assert snaps[-1].percent_source == "final"


@pytest.mark.parametrize("name", ["coding_todowrite", "coding_tasks"])
def test_recorded_plans_rise_with_time_within_items_then_final(name: str) -> None:
    snaps = snapshots_after_each(transcript_events(name, "s_rec"))
    running = snaps[:-1]
    percents = [s.percent for s in running]
    assert percents == sorted(percents) and max(percents) <= ESTIMATE_CEILING
    steps = _steps(running, "todos")
    # Real timestamps: the percent moves within the items, not only at their ends.
    assert len(steps) > 4 and steps[-1] > 60
    assert snaps[-1].percent_source == "final" and snaps[-1].state == "completed"


def test_a_slow_run_without_a_plan_rises_but_stays_below_100_until_it_ends() -> None:
    snaps = snapshots_after_each(transcript_events("slow", "s_slow"))
    before_end = snaps[:-1]
    percents = [s.percent for s in before_end]
    assert all(s.percent_source == "estimate" for s in before_end)
    assert percents == sorted(percents) and percents[-1] > percents[0]
    assert max(percents) < 100 and max(percents) <= ESTIMATE_CEILING
    assert (snaps[-1].percent, snaps[-1].percent_source) == (100.0, "final")


def test_an_unfinished_estimate_never_reaches_100() -> None:
    datas: list[EventData] = [RunQueuedData(prompt="long")]
    datas += [MessageCompletedData(message_id=f"m{i}") for i in range(2000)]
    assert snapshots_after_each(build_events("s_long", datas))[-1].percent < 100


def test_snapshot_has_exactly_the_spec_shape() -> None:
    snap = snapshots_after_each(transcript_events("bash", "s_shape"))[-1]
    wire = msgspec.json.decode(encode(snap))
    assert list(wire) == SPEC_FIELDS
    assert set(wire["tokens"]) == {"input", "output"}
    assert wire["state"] == "completed" and wire["tool_calls"] == {"Bash": 1}


def test_totals_timings_and_activity() -> None:
    t0 = 1_000_000_000_000
    datas: list[EventData] = [
        RunQueuedData(prompt="go"),
        RunStartedData(),
        MessageStartedData(message_id="m1"),
        TextDeltaData(index=0, text="hello "),
        TextDeltaData(index=0, text="world"),
        TextCompletedData(message_id="m1", text="hello world"),
        _call("a", "Bash", {"command": "false"}),
        ToolResultData(tool_use_id="a", is_error=True, content="exit 1"),
        _call("b", "Read", {"file_path": "x"}),
        MessageCompletedData(
            message_id="m1",
            usage={"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 7},
        ),
    ]
    events = [
        msgspec.structs.replace(e, ts=t0 + i * 100_000_000)
        for i, e in enumerate(build_events("s_tot", datas))
    ]
    running = snapshots_after_each(events)
    assert [s.state for s in running[:3]] == ["queued", "running", "running"]
    assert running[4].activity == "Writing" and running[6].activity == "Using Bash"
    assert running[7].activity == "Thinking" and running[-1].activity == "Using Read"
    last = running[-1]
    assert (last.turns, last.text_chars, last.tool_errors) == (1, 11, 1)
    assert last.tool_calls == {"Bash": 1, "Read": 1}
    assert last.tokens.input == 15 and last.tokens.output == 7
    assert last.ttft_ms == 300 and last.duration_ms == 900
    done = events + build_events(
        "s_tot",
        [
            RunCompletedData(
                num_turns=2, total_cost_usd=0.5, usage={"input_tokens": 40, "output_tokens": 9}
            )
        ],
        first_seq=11,
    )
    final = snapshots_after_each(done)[-1]
    assert (final.turns, final.tokens.input, final.tokens.output, final.cost_usd) == (2, 40, 9, 0.5)


def test_a_follow_up_run_adds_to_the_session_and_restarts_the_percent() -> None:
    first = build_events(
        "s_two", [RunQueuedData(prompt="1"), RunCompletedData(num_turns=3, total_cost_usd=0.25)]
    )
    second = build_events(
        "s_two",
        [RunQueuedData(prompt="2"), MessageCompletedData(message_id="m")],
        run=2,
        first_seq=3,
    )
    snaps = snapshots_after_each(first + second)
    assert (snaps[1].state, snaps[1].percent) == ("completed", 100.0)
    now = snaps[-1]
    assert (now.run, now.state, now.turns, now.cost_usd, now.percent_source) == (
        2,
        "running",
        4,
        0.25,
        "estimate",
    )
    assert now.percent < 100
    third = build_events(
        "s_two", [RunFailedData(error="boom", kind="api", total_cost_usd=0.25)], run=2, first_seq=5
    )
    end = snapshots_after_each(first + second + third)[-1]
    assert (end.state, end.cost_usd, end.percent) == ("failed", 0.5, 100.0)


def test_cancelled_run_and_unknown_types() -> None:
    events: list[Event | AnyEvent] = list(build_events("s_c", [RunQueuedData(prompt="x")]))
    events.append(
        AnyEvent(id="u", session="s_c", run=1, seq=2, ts=5, type="future.thing", data={"a": 1})
    )
    events += build_events("s_c", [RunCancelledData(reason="user")], first_seq=3)
    state = new_state("s_c")
    for event in events:
        state = apply(state, event)
    snap = snapshot(state)
    assert (snap.state, snap.last_seq, snap.percent_source) == ("cancelled", 3, "final")


def test_a_quiet_running_session_shows_idle_only_in_the_snapshot() -> None:
    events = build_events("s_idle", [RunQueuedData(prompt="x"), RunStartedData()])
    state = new_state("s_idle")
    for event in events:
        state = apply(state, event)
    assert snapshot(state, events[-1].ts + 5 * 10**9, 60 * 10**9).state == "running"
    assert snapshot(state, events[-1].ts + 61 * 10**9, 60 * 10**9).state == "idle"
    assert state.state == "running"


def test_the_state_is_a_function_of_the_events_and_survives_its_encoding() -> None:
    events = transcript_events("subagent", "s_det")
    a, b = new_state("s_det"), new_state("s_det")
    for event in events:
        a = apply(a, event)
    for event in events:
        b = apply(b, event)
    assert a == b
    again = msgspec.msgpack.decode(msgspec.msgpack.encode(a), type=SessionState)
    assert again == a and snapshot(again) == snapshot(a)
