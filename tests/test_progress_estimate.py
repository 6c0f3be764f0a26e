"""The calibrated estimate, pure: priors learned from history, time-weighted plans, ETA, the promises."""

from __future__ import annotations

import msgspec

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
)
from consumers.progress import estimate as est
from consumers.progress import history as hist
from consumers.progress.learning import Learning
from consumers.progress.reducer import (
    ESTIMATE_CEILING,
    SessionState,
    apply,
    at_least,
    new_state,
    snapshot,
)
from tests.support.events import build_events
from tests.support.transcript_events import transcript_events

T0 = 1_800_000_000_000_000_000
S = 1_000_000_000  # one second in ns


def _timed(session: str, datas: list[EventData], step_s: float, run: int = 1, first_seq: int = 1,
           start: int = T0) -> list[Event]:  # fmt: skip
    events = build_events(session, datas, run=run, first_seq=first_seq)
    return [
        msgspec.structs.replace(e, ts=start + int(i * step_s * S)) for i, e in enumerate(events)
    ]


def _run(prompt: str, turns: int = 4) -> list[EventData]:
    datas: list[EventData] = [RunQueuedData(prompt=prompt), RunStartedData()]
    for i in range(turns):
        datas += [TextDeltaData(index=0, text="x" * 50), MessageCompletedData(message_id=f"m{i}")]
    return [*datas, RunCompletedData(num_turns=turns)]


def _feed(learning: Learning, events: list[Event], first_position: int) -> SessionState:
    state = new_state(events[0].session)
    for i, event in enumerate(events):
        state = learning.apply(state, event, first_position + i)
    return state


def test_cold_start_has_no_eta_low_confidence_and_never_reaches_100() -> None:
    events = _timed("s_cold", _run("build it")[:-1], 0.5)
    state = new_state("s_cold")
    for event in events:
        state = apply(state, event)
    assert state.prior == est.COLD
    snap = snapshot(state)
    assert snap.eta_ms is None and snap.percent_confidence == 0.1 and 0 < snap.percent < 100
    # However long the run goes on, it stays under the ceiling until it ends.
    late = snapshot(state, events[-1].ts + 3600 * S)
    assert snap.percent < late.percent <= ESTIMATE_CEILING


def test_the_percent_only_rises_with_events_and_the_clock_cold_and_with_history() -> None:
    events = transcript_events("coding_tasks", "s_mono")
    span = events[-1].ts - events[0].ts
    learning = Learning("c")
    _feed(learning, transcript_events("coding_tasks", "s_before"), 1)
    for history in (hist.EMPTY, learning.history):
        state, seen = new_state("s_mono"), []
        for i, event in enumerate(events[:-1]):
            state = apply(state, event, history, 1000 + i)
            # Between this event and the next, as a publisher would see it at several moments.
            gap = events[i + 1].ts - event.ts
            seen += [snapshot(state, event.ts + gap * k // 3).percent for k in range(3)]
        assert seen == sorted(seen) and max(seen) < 100, history is hist.EMPTY
        assert seen[-1] > seen[0]
        assert max(seen) > 50 and span > 0


def test_a_run_of_a_known_kind_tracks_the_time_its_kind_takes() -> None:
    learning = Learning("c")
    # Two earlier runs of the same kind took 10 s each (and other kinds far longer).
    for n in range(2):
        _feed(learning, _timed(f"s_k{n}", _run("Fix the parser bug"), 1.0), 1 + 100 * n)
        _feed(learning, _timed(f"s_o{n}", _run("Write a long essay"), 6.0), 50 + 100 * n)
    prior = hist.prior(learning.history, hist.kind_of("fix the parser, please"))
    assert (prior.source, prior.runs, round(prior.duration_ms)) == ("kind", 2, 10_000)
    events = _timed("s_now", _run("Fix the parser again")[:-1], 1.0)
    state = _feed(learning, events[:6], 1000)
    # 5 s into a run of a kind that takes 10 s: half done, about 5 s to go.
    snap = snapshot(state, events[0].ts + 5 * S)
    assert 40 <= snap.percent <= 60
    assert snap.eta_ms is not None and 4000 <= snap.eta_ms <= 6000
    assert snap.percent_confidence is not None and snap.percent_confidence > 0.4
    # An unknown kind falls back to every run's median, with less confidence.
    other = _feed(learning, _timed("s_new", _run("Something else")[:3], 1.0), 2000)
    assert other.prior.source == "all"
    assert snapshot(other).percent_confidence < snap.percent_confidence  # type: ignore[operator]


def test_the_history_learns_once_and_a_replay_sees_what_it_saw_first() -> None:
    h = hist.learn(hist.EMPTY, 10, "k", 1000, 5.0)
    assert hist.learn(h, 10, "k", 9999, 1.0) is h  # a redelivered completion
    h2 = hist.learn(h, 20, "k", 3000, 5.0)
    assert hist.prior(h2, "k", before=15).duration_ms == 1000  # as an event at 15 saw it
    assert hist.prior(h2, "k").duration_ms == 2000
    assert hist.decode_history(hist.encode_history(h2)) == h2
    assert hist.kind_of("[scenario:bash] Say hello") == "scenario bash say"


def test_plan_items_weigh_what_items_like_them_took() -> None:
    def plan_run(session: str, start: int) -> list[Event]:
        todo = [{"content": "Write the parser", "status": "pending", "activeForm": "w"},
                {"content": "Run the tests", "status": "pending", "activeForm": "r"}]  # fmt: skip
        datas: list[EventData] = [RunQueuedData(prompt="plan it"), RunStartedData()]
        for n, statuses in enumerate(
            [("in_progress", "pending"), ("completed", "in_progress"), ("completed", "completed")]
        ):
            todos = [{**t, "status": s} for t, s in zip(todo, statuses, strict=True)]
            datas += [
                ToolCalledData(tool_use_id=f"t{n}", name="TodoWrite", input={"todos": todos}),
                ToolResultData(tool_use_id=f"t{n}", content="ok"),
            ]
        events = _timed(session, [*datas, RunCompletedData()], 0.1, start=start)
        # The parser takes 9 s, the tests 0.2 s: shift everything from the parser's completion.
        cut = 4
        return events[:cut] + [msgspec.structs.replace(e, ts=e.ts + 9 * S) for e in events[cut:]]

    learning = Learning("c")
    _feed(learning, plan_run("s_p1", T0), 1)
    assert learning.history.items["write the parser"][0].duration_ms > 8000
    events = plan_run("s_p2", T0 + 100 * S)
    state = _feed(learning, events[:5], 100)  # the parser done, the tests in progress
    assert state.plan.expect["write the parser"] > 8000
    snap = snapshot(state)
    # Equal steps would say 50; the parser was most of the plan's time.
    assert snap.percent_source == "todos" and snap.percent > 60


def test_a_quiet_run_stops_moving_once_idle() -> None:
    state = new_state("s_q")
    for event in _timed("s_q", _run("x")[:3], 1.0):
        state = apply(state, event)
    idle = 60 * S
    at_idle = snapshot(state, state.updated_at + idle, idle)
    assert snapshot(state, state.updated_at + idle // 2, idle).percent < at_idle.percent
    later = snapshot(state, state.updated_at + 50 * idle, idle)
    assert (
        later.state == "idle"
        and later.percent == at_idle.percent
        and later == snapshot(state, state.updated_at + 2 * idle, idle)
    )


def test_at_least_keeps_what_was_shown_for_the_same_run() -> None:
    state = new_state("s_al")
    for event in _timed("s_al", _run("x")[:3], 1.0):
        state = apply(state, event)
    snap = snapshot(state)
    shown = msgspec.structs.replace(snap, percent=snap.percent + 5)
    assert at_least(snap, shown).percent == shown.percent
    assert at_least(snap, msgspec.structs.replace(shown, run=0)) == snap
    assert at_least(snap, None) == snap
