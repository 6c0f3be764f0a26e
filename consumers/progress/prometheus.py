"""Prometheus aggregates of the progress stream, served on `/metrics`.

Observations come from comparing the states before and after each event
(consumers/progress/reducer.py), so the reducer stays pure.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Iterable
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from agentcast.events import AnyEvent, Event, ToolCalled, ToolResult
from agentcast.progress import STATES
from agentcast.replicas import ReplicasCollector
from consumers.progress.reducer import SessionState
from consumers.suspects import SuspectEvents

logger = logging.getLogger(__name__)

_SECONDS: Final = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_FAST_SECONDS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)


class ProgressMetrics:
    """The metrics of one metrics process, in their own registry."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        r.register(ReplicasCollector())  # streams with fewer replicas than wanted
        self.suspects = SuspectEvents("metrics", r)
        self.sessions = Gauge("agentcast_sessions", "Sessions by state", ["state"], registry=r)
        self.events = Counter("agentcast_events", "Events consumed, by type", ["type"], registry=r)
        self.tool_calls = Counter(
            "agentcast_tool_calls", "Tool calls by tool", ["tool"], registry=r
        )
        self.tool_errors = Counter(
            "agentcast_tool_errors", "Tool results with is_error, by tool", ["tool"], registry=r
        )
        self.tokens = Counter("agentcast_tokens", "Tokens by direction", ["direction"], registry=r)
        self.cost = Counter("agentcast_cost_usd", "Cost of ended runs (USD)", registry=r)
        self.runs = Counter(
            "agentcast_runs_ended", "Runs ended, by outcome", ["outcome"], registry=r
        )
        self.run_duration = Histogram(
            "agentcast_run_duration_seconds",
            "run.queued to the run's end",
            buckets=_SECONDS,
            registry=r,
        )
        self.ttft = Histogram(
            "agentcast_ttft_seconds",
            "run.queued to the first output",
            buckets=_FAST_SECONDS,
            registry=r,
        )
        self.tool_latency = Histogram(
            "agentcast_tool_latency_seconds",
            "tool.called to tool.result",
            ["tool"],
            buckets=_SECONDS,
            registry=r,
        )
        self.lag = Gauge(
            "agentcast_metrics_consumer_lag", "Events in the stream not yet consumed", registry=r
        )
        for state in STATES:
            self.sessions.labels(state).set(0)
        # prometheus-client's labels() costs a lookup and a lock per call: keep the hot children.
        self._by_type: dict[str, Any] = {}

    def observe(
        self, before: SessionState, after: SessionState, event: Event | AnyEvent, kind: str
    ) -> None:
        """Count one applied event of type `kind`."""
        counter = self._by_type.get(kind)
        if counter is None:
            counter = self._by_type[kind] = self.events.labels(kind)
        counter.inc()
        if after.first_output_at != before.first_output_at and after.queued_at:
            self.ttft.observe(max(0, after.first_output_at - after.queued_at) / 1e9)
        if kind == "text.delta":
            return  # the hot path: a delta changes nothing else observed here
        match event:
            case ToolCalled(data=d):
                self.tool_calls.labels(d.name).inc()
            case ToolResult(data=d):
                opened = before.open_tools.get(d.tool_use_id)
                name = opened.name if opened else "unknown"
                if d.is_error:
                    self.tool_errors.labels(name).inc()
                if opened:
                    self.tool_latency.labels(name).observe(
                        max(0, event.ts - opened.called_at) / 1e9
                    )
        if before.run_open and not after.run_open:
            self.runs.labels(after.state).inc()
            self.run_duration.observe(max(0, after.ended_at - after.queued_at) / 1e9)
            self.cost.inc(max(0.0, after.cost_usd - before.cost_usd))
        grown_in = _total_in(after) - _total_in(before)
        grown_out = _total_out(after) - _total_out(before)
        if grown_in > 0:
            self.tokens.labels("input").inc(grown_in)
        if grown_out > 0:
            self.tokens.labels("output").inc(grown_out)

    def set_states(self, states: Iterable[str]) -> None:
        tally = Tally(states)
        for state in STATES:
            self.sessions.labels(state).set(tally.get(state, 0))

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve `/metrics` (port 0 picks a free one); returns the port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        bound: int = server.server_address[1]
        self._server = server
        logger.info("Prometheus metrics on http://%s:%d/metrics", host, bound)
        return bound

    def close(self) -> None:
        server = getattr(self, "_server", None)
        if server is not None:
            server.shutdown()
            server.server_close()


def _total_in(s: SessionState) -> int:
    return s.past_input + s.input_tokens


def _total_out(s: SessionState) -> int:
    return s.past_output + s.output_tokens
