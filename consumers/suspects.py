"""Suspected forgeries a consumer kept out of its output, counted for Prometheus.

Both consumers apply a session's events in seq order (consumers/holdback.py)
and keep out what its one writer cannot have written: a repeated seq that is
another message, and a far-ahead seq that the session's in-order events
overtook. Each such event is logged at error, counted here and (archiver)
written to `_quarantine.jsonl`.

The metrics consumer counts into its own registry (served on its
`--metrics-port`); the archiver has one of its own, served when it is
started with `--metrics-port`.
"""

from __future__ import annotations

import logging
from typing import Final, Literal

from prometheus_client import CollectorRegistry, Counter, start_http_server

logger = logging.getLogger(__name__)

Reason = Literal["repeated_seq", "far_ahead"]
NAME: Final = "agentcast_suspect_events"


class SuspectEvents:
    """`agentcast_suspect_events_total{consumer, reason}` in a registry."""

    def __init__(self, consumer: str, registry: CollectorRegistry | None = None) -> None:
        self.consumer = consumer
        self.registry = registry or CollectorRegistry()
        self._counter = Counter(
            NAME,
            "Events kept out as suspected forgeries, by consumer and reason",
            ["consumer", "reason"],
            registry=self.registry,
        )
        for reason in ("repeated_seq", "far_ahead"):
            self._counter.labels(consumer, reason)
        self._server: object | None = None

    def count(self, reason: Reason) -> None:
        self._counter.labels(self.consumer, reason).inc()

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve this registry on `/metrics` (port 0 picks a free one); returns the port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        bound: int = server.server_address[1]
        logger.info("%s metrics on http://%s:%d/metrics", self.consumer, host, bound)
        return bound

    def close(self) -> None:
        server = self._server
        if server is not None:
            server.shutdown()  # type: ignore[attr-defined]
            server.server_close()  # type: ignore[attr-defined]
