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
- Percent: the plan (consumers/progress/plan.py) when this run changed it;
  else an estimate that rises with the work done (model messages, tool
  results, text) and stays below `ESTIMATE_CEILING`; 100 once the run ends.
"""

from __future__ import annotations

import math
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
from consumers.progress import plan as plans
from consumers.progress.plan import Plan

ESTIMATE_CEILING: Final = 95.0
# Work units at which the estimate has covered 1 - 1/e (63%) of the ceiling.
_ESTIMATE_SCALE: Final = 25.0
_CHARS_PER_UNIT: Final = 1000.0
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


def new_state(session: str) -> SessionState:
    return SessionState(session=session)


def apply(state: SessionState, event: Event | AnyEvent) -> SessionState:
    """The state after one event (the caller applies a session's events in seq order)."""
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
                plan=plans.on_call(s.plan, d.name, d.input, d.tool_use_id, s.run),
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
                plan=plans.on_result(s.plan, d.tool_use_id, d.content, d.is_error, s.run),
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
        case RunQueued():
            s = _close(s) if s.run_open else s
            return _replace(
                s,
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
    if not s.run_open and s.ended_at:
        percent, source = 100.0, "final"
    elif s.plan.run == s.run and (from_plan := s.plan.percent()) is not None:
        percent, source = from_plan, "todos"
    else:
        percent, source = estimate(s.work), "estimate"
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
    )


def estimate(work: float) -> float:
    """Rises with work, never reaches the ceiling (so never 100 before the end)."""
    return math.floor(ESTIMATE_CEILING * (1 - math.exp(-work / _ESTIMATE_SCALE)) * 10) / 10


# -- helpers --------------------------------------------------------------------------


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
