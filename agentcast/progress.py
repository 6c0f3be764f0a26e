"""The progress snapshot of a session (SPEC "Consumers"), as published and stored.

The metrics consumer publishes one on `agentcast.progress.<session>` whenever
it changes (at most a few per second) and keeps the latest in the KV bucket
`agentcast_sessions` under the session id; the gateway serves them on
`GET /v1/sessions[/{session}]`. Wire shape:

    {"session": S, "state": "running", "run": 2, "turns": 5,
     "tool_calls": {"Bash": 3}, "tool_errors": 0, "text_chars": 1834,
     "tokens": {"input": 0, "output": 0}, "cost_usd": 0.0123,
     "started_at": ts, "updated_at": ts, "duration_ms": 0, "ttft_ms": 0,
     "activity": "Using Bash", "percent": 62.5, "percent_source": "todos",
     "last_seq": 181, "eta_ms": 4200, "percent_confidence": 0.6}

Session totals: turns, tool_calls, tool_errors, text_chars, tokens, cost_usd.
The current run: state, run, duration_ms, ttft_ms (both from its
`run.queued`), activity, percent, eta_ms, percent_confidence. Times are producer Unix nanoseconds.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from agentcast.codec import json_decoder_of

State = Literal["queued", "running", "idle", "completed", "failed", "cancelled"]
PercentSource = Literal["todos", "estimate", "final"]

STATES: Final[tuple[State, ...]] = ("queued", "running", "idle", "completed", "failed", "cancelled")
ACTIVE_STATES: Final = frozenset({"queued", "running", "idle"})


class Tokens(msgspec.Struct, frozen=True, kw_only=True):
    input: int = 0
    """Input-side tokens: input + cache creation + cache read."""
    output: int = 0


class ProgressSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    session: str
    state: State
    run: int
    turns: int = 0
    tool_calls: dict[str, int] = {}
    tool_errors: int = 0
    text_chars: int = 0
    tokens: Tokens = Tokens()
    cost_usd: float = 0.0
    started_at: int = 0
    updated_at: int = 0
    duration_ms: int = 0
    ttft_ms: int = 0
    activity: str = ""
    percent: float = 0.0
    percent_source: PercentSource = "estimate"
    last_seq: int = 0
    eta_ms: int | None = None
    """Time left in the current run as the percent implies it; None while nothing is known (0 at the end)."""
    percent_confidence: float | None = None
    """0..1: how far the percent can be trusted (1 at the end; low with no history)."""


_decoder: Final = json_decoder_of(ProgressSnapshot)


def decode_snapshot(raw: bytes) -> ProgressSnapshot:
    """A snapshot from its JSON (KV value or progress message); raises msgspec.ValidationError."""
    return _decoder.decode(raw)
