"""The archive disk refusing writes (full, read-only, failing): stop acking, say so, retry.

While a flush fails, the archiver acks nothing (JetStream keeps every event
and redelivers what waits too long), keeps the unwritten lines in memory
(bounded by the consumer's max ack pending), skips checkpoints and
compression (they would write), and retries the flush with a backoff. It says
so at error in its log, once when it starts and then every `_REPEAT_S`, and in
`/metrics`: `agentcast_archive_write_blocked` is 1 meanwhile and
`agentcast_archive_write_errors_total{errno}` counts the failed attempts.
A failed checkpoint or compression (the event lines are durable already) is
counted and logged the same way and retried on the next tick; acks go on.
"""

from __future__ import annotations

import logging
import time
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge

from consumers.archive.writer import ArchiveUnwritable

logger = logging.getLogger(__name__)

_RETRY_FIRST_S: Final = 0.5
_RETRY_MAX_S: Final = 5.0
_REPEAT_S: Final = 30.0


class DiskHealth:
    """Whether the archive can be written now, and when to try again."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._blocked = Gauge(
            "agentcast_archive_write_blocked",
            "1 while the archive disk refuses writes (nothing is acked meanwhile)",
            registry=registry,
        )
        self._errors = Counter(
            "agentcast_archive_write_errors",
            "Failed archive flushes (write or fsync), by errno",
            ["errno"],
            registry=registry,
        )
        self.since: float | None = None
        self._retry_s = _RETRY_FIRST_S
        self._next_try = 0.0
        self._next_log = 0.0
        self._next_side_log = 0.0

    @property
    def blocked(self) -> bool:
        return self.since is not None

    def may_try(self) -> bool:
        return time.monotonic() >= self._next_try

    def failed(self, exc: ArchiveUnwritable, pending_lines: int) -> float:
        """Record a failed flush; returns when (monotonic) to try again."""
        now = time.monotonic()
        self._errors.labels(exc.code).inc()
        if self.since is None:
            self.since = now
            self._retry_s = _RETRY_FIRST_S
            self._blocked.set(1)
        if now >= self._next_log:
            logger.error(
                "Archive unwritable: %s; not acking, %d lines kept pending, retrying "
                "(blocked %.0fs so far)",
                exc,
                pending_lines,
                now - self.since,
            )
            self._next_log = now + _REPEAT_S
        self._next_try = now + self._retry_s
        self._retry_s = min(self._retry_s * 2, _RETRY_MAX_S)
        return self._next_try

    def side_failed(self, what: str, exc: OSError) -> None:
        """A checkpoint or a compression failed: retried on the next tick; the event lines are safe."""
        err = ArchiveUnwritable(exc)
        self._errors.labels(err.code).inc()
        now = time.monotonic()
        if now >= self._next_side_log:
            logger.error("Archive %s failed: %s; retrying each tick", what, err)
            self._next_side_log = now + _REPEAT_S

    def written(self, lines: int) -> None:
        """A flush succeeded: if the disk had been refusing, say that it is back."""
        if self.since is None:
            return
        logger.warning(
            "Archive writable again after %.1fs: %d pending lines written, acking again",
            time.monotonic() - self.since,
            lines,
        )
        self.since = None
        self._blocked.set(0)
