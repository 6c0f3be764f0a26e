"""Progress of a session as a pure reducer: `apply(state, event) -> state`, `snapshot(state, now)`.

No I/O and no clock: a state depends only on the events applied, in seq
order, so replaying a session rebuilds exactly the same state (which is what
makes metrics restarts exact). Only `snapshot()` takes `now`, to show a
running session that has gone quiet as `idle`.

Rules:
- `run.queued` opens a run; `run.started` (or any model/tool event) makes it
  running; `run.completed|failed|cancelled` closes it.
- Session totals: turns (main-agent `message.completed`, replaced by the
  run's `num_turns` at its end), tool calls by name (`tool.called`), tool
  errors, text characters (deltas, or a completed text nobody streamed),
  tokens (message usages, replaced by the run's usage at its end), cost (the
  runs' `total_cost_usd`).
- Current run: ttft = first output (text, thinking or tool) - `run.queued`;
  duration = last event - `run.queued`; activity = "Thinking", "Writing",
  "Using <tool>".
- Percent: the plan (consumers/progress/plan.py, time-weighted) when this
  run changed it, blended with the run's estimate when history backs it;
  else the estimate (consumers/progress/estimate.py): elapsed time and work
  against the run's prior, learned from similar completed runs
  (consumers/progress/history.py) and fixed when the run is queued. Below
  `ESTIMATE_CEILING` until the run ends, then 100. It only rises: both
  fractions grow with time and events, and a plan change that would lower
  it (items added) leaves the percent at the `floor` it had reached.
- ETA and confidence come with the percent; `snapshot(state, now)` moves
  them with the clock between events (`now` = 0: as of the last event).

`apply` takes the history and the event's stream position: the prior and
the plan items' expectations are looked up there, from samples before that
position, so a replay after a restart computes exactly the same state.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from agentcast.events import (
    AnyEvent,
    Event,
    MessageCompleted,
    MessageStarted,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunQueued,
    RunStarted,
    Status,
    TextCompleted,
    TextDelta,
    ThinkingCompleted,
    ThinkingDelta,
    ToolCalled,
    ToolInputDelta,
    ToolResult,
    ToolStarted,
)
from agentcast.progress import ProgressSnapshot, Tokens
from consumers.progress import estimate as est
from consumers.progress import history as hist
from consumers.progress import plan as plans
from consumers.progress.estimate import Prior
from consumers.progress.history import History
from consumers.progress.plan import Plan

ESTIMATE_CEILING: Final = est.CEILING
_CHARS_PER_UNIT: Final = 1000.0
# How much a plan's own fraction counts against the run's estimate once history backs the estimate.
_PLAN_WEIGHT: Final = 0.5
_replace = msgspec.structs.replace


class OpenTool(msgspec.Struct, frozen=True, array_like=True):
    name: str
    called_at: int


class SessionState(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Everything the snapshot and the Prometheus observations need; persisted as msgpack."""

    session: str
    state: str = "queued"
    run: int = 0
    run_open: bool = False
    last_seq: int = 0
    started_at: int = 0
    updated_at: int = 0
    # Ended runs, folded in.
    past_turns: int = 0
    past_input: int = 0
    past_output: int = 0
    cost_usd: float = 0.0
    # The current run.
    queued_at: int = 0
    first_output_at: int = 0
    ended_at: int = 0
    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    work: float = 0.0
    activity: str = ""
    open_tools: dict[str, OpenTool] = {}
    streamed: frozenset[str] = frozenset()
    """Streams (main agent "", or a sub-agent's tool_use_id) with text deltas in their current message."""
    # Whole session.
    tool_calls: dict[str, int] = {}
    tool_errors: int = 0
    text_chars: int = 0
    plan: Plan = plans.EMPTY
    # The estimate (trailing, with defaults: older stored states still decode).
    kind: str = ""
    """The current run's prompt kind (history.kind_of)."""
    prior: Prior = est.COLD
    """What runs like the current one took, as known when it was queued."""
    floor: float = 0.0
    """The percent reached before a plan change that would have lowered it."""


class Completed(msgspec.Struct, frozen=True):
    """A completed run, as the history learns it."""

    kind: str
    duration_ms: int
    work: float
    items: dict[str, int]


def new_state(session: str) -> SessionState:
    return SessionState(session=session)


def apply(
    state: SessionState,
    event: Event | AnyEvent,
    history: History = hist.EMPTY,
    position: int | None = None,
) -> SessionState:
    """The state after one event (the caller applies a session's events in seq order).

    `history` gives the priors, looked up before stream `position` (None: all of it).
    """
    if type(event) is TextDelta:
        # Most events are text deltas: one copy of the state, not two.
        ts, text, key = event.ts, event.data.text, event.parent_tool_use_id or ""
        return _replace(
            state,
            run=max(state.run, event.run),
            last_seq=event.seq,
            updated_at=ts,
            started_at=state.started_at or ts,
            state=_running(state),
            first_output_at=state.first_output_at or ts,
            activity="Writing",
            text_chars=state.text_chars + len(text),
            work=state.work + len(text) / _CHARS_PER_UNIT,
            streamed=state.streamed if key in state.streamed else state.streamed | {key},
        )
    s = _replace(
        state,
        run=max(state.run, event.run),
        last_seq=event.seq,
        updated_at=event.ts,
        started_at=state.started_at or event.ts,
    )
    match event:
        case ThinkingDelta() | ThinkingCompleted():
            return _output(s, event.ts, activity="Thinking")
        case ToolInputDelta():
            return s
        case ToolStarted(data=d):
            return _output(s, event.ts, activity=f"Using {d.name}")
        case ToolCalled(data=d):
            return _output(
                s,
                event.ts,
                activity=f"Using {d.name}",
                tool_calls={**s.tool_calls, d.name: s.tool_calls.get(d.name, 0) + 1},
                open_tools={**s.open_tools, d.tool_use_id: OpenTool(d.name, event.ts)},
                **_replan(
                    s,
                    plans.on_call(s.plan, d.name, d.input, d.tool_use_id, s.run, event.ts),
                    event.ts,
                    history,
                    position,
                ),
            )
        case ToolResult(data=d):
            open_tools = {k: v for k, v in s.open_tools.items() if k != d.tool_use_id}
            still = next(reversed(open_tools.values()), None)
            return _replace(
                s,
                state=_running(s),
                activity=f"Using {still.name}" if still else "Thinking",
                open_tools=open_tools,
                tool_errors=s.tool_errors + (1 if d.is_error else 0),
                work=s.work + 1,
                **_replan(
                    s,
                    plans.on_result(s.plan, d.tool_use_id, d.content, d.is_error, s.run, event.ts),
                    event.ts,
                    history,
                    position,
                ),
            )
        case TextCompleted(data=d):
            if (event.parent_tool_use_id or "") in s.streamed:
                return s
            return _output(s, event.ts, activity="Writing", text_chars=s.text_chars + len(d.text))
        case MessageStarted():
            key = event.parent_tool_use_id or ""
            return _replace(s, state=_running(s), activity="Thinking", streamed=s.streamed - {key})
        case MessageCompleted(data=d):
            tokens_in, tokens_out = _usage(d.usage)
            return _replace(
                s,
                state=_running(s),
                turns=s.turns + (0 if event.parent_tool_use_id else 1),
                input_tokens=s.input_tokens + tokens_in,
                output_tokens=s.output_tokens + tokens_out,
                work=s.work + 1,
            )
        case Status() | RunStarted():
            activity = "Thinking" if s.activity in ("", "Queued") else s.activity
            return _replace(s, state=_running(s), activity=activity)
        case RunQueued(data=d):
            s = _close(s) if s.run_open else s
            kind = hist.kind_of(d.prompt)
            return _replace(
                s,
                kind=kind,
                prior=hist.prior(history, kind, position),
                floor=0.0,
                state="queued",
                run=event.run,
                run_open=True,
                queued_at=event.ts,
                first_output_at=0,
                ended_at=0,
                turns=0,
                input_tokens=0,
                output_tokens=0,
                work=0.0,
                activity="Queued",
                open_tools={},
                streamed=frozenset(),
            )
        case RunCompleted(data=d):
            return _end(s, "completed", event.ts, d.num_turns, d.usage, d.total_cost_usd)
        case RunFailed(data=d):
            return _end(s, "failed", event.ts, d.num_turns, d.usage, d.total_cost_usd)
        case RunCancelled():
            return _end(s, "cancelled", event.ts, None, None, None)
    return s


def snapshot(s: SessionState, now_ns: int = 0, idle_after_ns: int = 0) -> ProgressSnapshot:
    """The published view of a state; `idle` when running and quiet since `idle_after_ns` before `now_ns`."""
    state = s.state
    if state == "running" and idle_after_ns and now_ns - s.updated_at >= idle_after_ns:
        state = "idle"
    # A quiet run's clock stops where it turns idle: its snapshot stops changing (and being published).
    if idle_after_ns and now_ns - s.updated_at > idle_after_ns:
        now_ns = s.updated_at + idle_after_ns
    percent, source, eta, confidence = progress(s, now_ns)
    end = s.ended_at or s.updated_at
    return ProgressSnapshot(
        session=s.session,
        state=state,  # type: ignore[arg-type]
        run=s.run,
        turns=s.past_turns + s.turns,
        tool_calls=s.tool_calls,
        tool_errors=s.tool_errors,
        text_chars=s.text_chars,
        tokens=Tokens(input=s.past_input + s.input_tokens, output=s.past_output + s.output_tokens),
        cost_usd=round(s.cost_usd, 6),
        started_at=s.started_at,
        updated_at=s.updated_at,
        duration_ms=(end - s.queued_at) // 1_000_000 if s.queued_at else 0,
        ttft_ms=(s.first_output_at - s.queued_at) // 1_000_000
        if s.first_output_at and s.queued_at
        else 0,
        activity=s.activity,
        percent=percent,
        percent_source=source,  # type: ignore[arg-type]
        last_seq=s.last_seq,
        eta_ms=eta,
        percent_confidence=confidence,
    )


def at_least(snap: ProgressSnapshot, shown: ProgressSnapshot | None) -> ProgressSnapshot:
    """`snap`, its percent raised to what was last shown for the same run.

    The pure percent only rises with events and the clock; this covers the
    clock the publisher used for the last one shown, a little ahead of the
    events' own (a plan that grows is floored at event times).
    """
    if shown is None or shown.run != snap.run or shown.percent <= snap.percent:
        return snap
    return _replace(snap, percent=shown.percent)


def progress(s: SessionState, now_ns: int = 0) -> tuple[float, str, int | None, float]:
    """(percent, its source, ETA in ms or None, confidence) of the current run at `now_ns`."""
    if not s.run_open and s.ended_at:
        return 100.0, "final", 0, 1.0
    now = max(now_ns, s.updated_at)
    elapsed_ms = (now - s.queued_at) / 1e6 if s.queued_at else 0.0
    frac = est.fraction(s.prior, elapsed_ms, s.work)
    confidence = est.confidence(s.prior, frac)
    source = "estimate"
    if s.plan.run == s.run and (from_plan := s.plan.fraction(now)) is not None:
        weight = 1.0 if s.prior.source == "cold" else _PLAN_WEIGHT
        frac = weight * from_plan + (1 - weight) * frac
        confidence = max(confidence, round(0.3 + 0.5 * from_plan, 2))
        source = "todos"
    percent = max(s.floor, est.percent_of(frac))
    known = source == "todos" or s.prior.source != "cold"
    return percent, source, est.eta_ms(percent, elapsed_ms) if known else None, confidence


def completed(before: SessionState, after: SessionState) -> Completed | None:
    """The run `after` completed (None if this step completed none): what the history learns."""
    if not before.run_open or after.run_open or after.state != "completed" or not after.queued_at:
        return None
    items = after.plan.done_ms if after.plan.run == after.run else {}
    return Completed(after.kind, (after.ended_at - after.queued_at) // 1_000_000, after.work, items)


# -- helpers --------------------------------------------------------------------------


def _replan(
    s: SessionState, plan: Plan, ts: int, history: History, position: int | None
) -> dict[str, Any]:
    """The changes for a new plan: its items' expectations, and a floor so the percent cannot drop."""
    if plan is s.plan:
        return {}
    new = {i for i, _ in plan.items() if i not in plan.expect}
    found = {i: ms for i in new if (ms := hist.item_ms(history, i, position)) is not None}
    if found:
        plan = _replace(plan, expect={**plan.expect, **found})
    return {"plan": plan, "floor": max(s.floor, progress(s, ts)[0])}


def _running(s: SessionState) -> str:
    # A closed run keeps its outcome; a run whose start we never saw (it aged
    # out of the stream before this consumer existed) is running all the same.
    return s.state if not s.run_open and s.ended_at else "running"


def _output(s: SessionState, ts: int, **changes: Any) -> SessionState:
    """A model output event: the run is running, and its first output sets the ttft."""
    return _replace(s, state=_running(s), first_output_at=s.first_output_at or ts, **changes)


def _end(
    s: SessionState,
    outcome: str,
    ts: int,
    num_turns: int | None,
    usage: dict[str, Any] | None,
    cost: float | None,
) -> SessionState:
    # The result's own totals are authoritative over what the stream added up.
    turns = num_turns if num_turns else s.turns
    tokens_in, tokens_out = _usage(usage) if usage else (s.input_tokens, s.output_tokens)
    s = _replace(
        s,
        state=outcome,
        ended_at=ts,
        activity="",
        open_tools={},
        turns=turns,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cost_usd=s.cost_usd + (cost or 0.0),
    )
    return _close(s)


def _close(s: SessionState) -> SessionState:
    """Fold the run's counts into the session's and mark it closed."""
    return _replace(
        s,
        run_open=False,
        ended_at=s.ended_at or s.updated_at,
        past_turns=s.past_turns + s.turns,
        past_input=s.past_input + s.input_tokens,
        past_output=s.past_output + s.output_tokens,
        turns=0,
        input_tokens=0,
        output_tokens=0,
    )


def _usage(usage: dict[str, Any] | None) -> tuple[int, int]:
    if not usage:
        return 0, 0
    tokens_in = sum(
        v
        for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        if isinstance(v := usage.get(k), int)
    )
    out = usage.get("output_tokens")
    return tokens_in, out if isinstance(out, int) else 0
