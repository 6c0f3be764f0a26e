"""Prometheus metrics: plain integer counters on the hot path, read at scrape time.

Incrementing a prometheus_client Counter takes a lock; the fan-out loop
instead bumps ints on one `Stats` object, and a custom collector turns them
into metric families when /metrics is scraped. Each worker process exposes its
own numbers (`--workers N`: scrape each, or sum over the `pid` label).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gateway.loop_lag import LoopLag

TRANSPORTS = ("sse", "ws")


class Stats:
    """The gateway's counters and gauges, by transport where it matters."""

    def __init__(self) -> None:
        self.connections = {t: 0 for t in TRANSPORTS}
        self.connections_total = {t: 0 for t in TRANSPORTS}
        self.events_out = {t: 0 for t in TRANSPORTS}
        self.bytes_out = {t: 0 for t in TRANSPORTS}
        self.lagged = {t: 0 for t in TRANSPORTS}
        self.auth_failures = 0
        self.replayed_events = 0
        self.gap_refills = 0
        self.slow_consumers = 0
        self.events_in = 0
        self.limit_hits: dict[str, int] = {}
        """Refusals by the setting crossed (`max_streams_per_token`, `header_timeout_s`...)."""
        self.replay_reads = 0
        self.replay_reads_shared = 0
        self.replays_active = 0
        self.replays_waiting = 0
        self.replays_queued = 0
        self.replays_refused = 0
        self.replays_parked = 0
        self.replays_parked_total = 0
        self.loop_lag = LoopLag()

    def hit(self, limit: str) -> None:
        """Count one refusal for crossing `limit` (never per event: per request or frame)."""
        self.limit_hits[limit] = self.limit_hits.get(limit, 0) + 1


class _Collector(Collector):
    def __init__(
        self,
        stats: Stats,
        topics: Callable[[], int],
        subscriptions: Callable[[], int],
        buffered: Callable[[], int],
    ) -> None:
        self._stats = stats
        self._topics = topics
        self._subscriptions = subscriptions
        self._buffered = buffered

    def collect(self) -> Iterator[Metric]:
        s = self._stats
        pid = str(os.getpid())
        yield _by_transport(
            GaugeMetricFamily,
            "agentcast_gateway_connections",
            "Open streaming connections",
            s.connections,
            pid,
        )
        yield _by_transport(
            CounterMetricFamily,
            "agentcast_gateway_connections",
            "Streaming connections accepted",
            s.connections_total,
            pid,
        )
        yield _by_transport(
            CounterMetricFamily,
            "agentcast_gateway_events_out",
            "Event frames written to clients",
            s.events_out,
            pid,
        )
        yield _by_transport(
            CounterMetricFamily,
            "agentcast_gateway_bytes_out",
            "Bytes of event frames written to clients",
            s.bytes_out,
            pid,
        )
        yield _by_transport(
            CounterMetricFamily,
            "agentcast_gateway_lagged_disconnects",
            "Clients disconnected for falling behind",
            s.lagged,
            pid,
        )
        yield _single(
            CounterMetricFamily,
            "agentcast_gateway_auth_failures",
            "Requests refused for a missing, invalid or insufficient token",
            s.auth_failures,
            pid,
        )
        yield _single(
            CounterMetricFamily,
            "agentcast_gateway_replayed_events",
            "Events read from JetStream for replay",
            s.replayed_events,
            pid,
        )
        yield _single(
            CounterMetricFamily,
            "agentcast_gateway_gap_refills",
            "Live gaps refilled from JetStream",
            s.gap_refills,
            pid,
        )
        yield _single(
            CounterMetricFamily,
            "agentcast_gateway_slow_consumers",
            "Live messages dropped past the pending limits (then refilled from JetStream)",
            s.slow_consumers,
            pid,
        )
        yield _single(
            CounterMetricFamily,
            "agentcast_gateway_events_in",
            "Live events received from NATS",
            s.events_in,
            pid,
        )
        hits = CounterMetricFamily(
            "agentcast_gateway_limit_hits",
            "Requests, connections or frames refused for crossing a limit, by its setting",
            labels=["limit", "pid"],
        )
        for limit, value in sorted(s.limit_hits.items()):
            hits.add_metric([limit, pid], value)
        yield hits
        yield _single(
            CounterMetricFamily,
            "agentcast_gateway_replay_reads",
            "Replay batches read from JetStream",
            s.replay_reads,
            pid,
        )
        yield _single(
            CounterMetricFamily,
            "agentcast_gateway_replay_reads_shared",
            "Replay batches answered by another replay's read (coalesced)",
            s.replay_reads_shared,
            pid,
        )
        yield _single(
            GaugeMetricFamily,
            "agentcast_gateway_replays_active",
            "Replays running (admitted)",
            s.replays_active,
            pid,
        )
        yield _single(
            GaugeMetricFamily,
            "agentcast_gateway_replays_waiting",
            "Replays waiting for a slot",
            s.replays_waiting,
            pid,
        )
        yield _single(
            GaugeMetricFamily,
            "agentcast_gateway_connections_parked",
            "Replay requests parked as their bytes until the line shortens (gateway/parking.py)",
            s.replays_parked,
            pid,
        )
        yield _single(
            CounterMetricFamily,
            "agentcast_gateway_replays_parked",
            "Replay requests that were parked",
            s.replays_parked_total,
            pid,
        )
        yield _single(
            CounterMetricFamily,
            "agentcast_gateway_replays_queued",
            "Replays that had to wait for a slot",
            s.replays_queued,
            pid,
        )
        yield _single(
            CounterMetricFamily,
            "agentcast_gateway_replays_refused",
            "Replays refused (line full or waited too long), told to retry later",
            s.replays_refused,
            pid,
        )
        lag = HistogramMetricFamily(
            "agentcast_gateway_loop_lag_seconds",
            "How late the event loop ran a 10 ms timer (everything in the process waited that long)",
            labels=["pid"],
        )
        lag.add_metric([pid], s.loop_lag.buckets(), s.loop_lag.total_s)
        yield lag
        yield _single(
            GaugeMetricFamily,
            "agentcast_gateway_upstream_subscriptions",
            "NATS subscriptions shared by clients",
            self._topics(),
            pid,
        )
        yield _single(
            GaugeMetricFamily,
            "agentcast_gateway_subscriptions",
            "Client subscriptions (session or firehose)",
            self._subscriptions(),
            pid,
        )
        yield _single(
            GaugeMetricFamily,
            "agentcast_gateway_buffered_bytes",
            "Bytes written but not yet sent, over all clients",
            self._buffered(),
            pid,
        )


def _by_transport(family: type, name: str, doc: str, values: dict[str, int], pid: str) -> Metric:
    metric: Metric = family(name, doc, labels=["transport", "pid"])
    for transport, value in values.items():
        metric.add_metric([transport, pid], value)  # type: ignore[attr-defined]
    return metric


def _single(family: type, name: str, doc: str, value: int, pid: str) -> Metric:
    metric: Metric = family(name, doc, labels=["pid"])
    metric.add_metric([pid], value)  # type: ignore[attr-defined]
    return metric


def registry(
    stats: Stats,
    topics: Callable[[], int],
    subscriptions: Callable[[], int],
    buffered: Callable[[], int],
) -> CollectorRegistry:
    """A registry of the gateway's own metrics (no process-global state)."""
    reg = CollectorRegistry(auto_describe=True)
    reg.register(_Collector(stats, topics, subscriptions, buffered))
    return reg


def render(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)
