"""Replicas of the streams a process found, for its log and its /metrics.

A role started against a stream with fewer replicas than its settings ask for
(a cluster grown from one node, a stream made by an older deploy) keeps
working, but one lost node can lose what that stream holds: it says so in its
log, and `agentcast_stream_replicas{stream=...}` beside
`agentcast_stream_replicas_wanted` shows it on every scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

_found: dict[str, tuple[int, int]] = {}
"""stream -> (replicas it has, replicas the settings want), for this process."""


def record(stream: str, have: int, want: int) -> None:
    """Note a stream's replicas; warn when it has fewer than wanted."""
    have = max(1, have)
    _found[stream] = (have, want)
    if have < want:
        logger.warning(
            "stream %s has %d replica(s), fewer than the %d wanted (AGENTCAST_REPLICAS): "
            "losing a node may lose its data; `agentcast up` or an admin connection raises it",
            stream,
            have,
            want,
        )


def found() -> dict[str, tuple[int, int]]:
    return dict(_found)


class ReplicasCollector(Collector):
    """`agentcast_stream_replicas` and `..._wanted`, one sample per stream seen."""

    def collect(self) -> Iterator[Metric]:
        have = GaugeMetricFamily(
            "agentcast_stream_replicas", "Replicas of a stream, as last seen", labels=["stream"]
        )
        want = GaugeMetricFamily(
            "agentcast_stream_replicas_wanted",
            "Replicas the settings ask for (AGENTCAST_REPLICAS)",
            labels=["stream"],
        )
        for stream, (h, w) in sorted(_found.items()):
            have.add_metric([stream], h)
            want.add_metric([stream], w)
        yield have
        yield want
