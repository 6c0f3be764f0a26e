"""Rate limits, pure: token buckets for run submissions per token and frames per WebSocket.

Both are checked per request or per client frame, never per event. Across
gateway processes only the stream slots are shared (gateway/slots.py): a
run-rate bucket is per process, so `--workers N` lets a token submit up to N
times the rate, which the queue bound (`max_queued_runs`, enforced by
JetStream itself) caps anyway.
"""

from __future__ import annotations

import math
import time
from typing import Final

from agentcast.errors import RateLimited
from agentcast.settings import Settings

_RUN_BURST: Final = 5.0
"""A token may submit this many runs at once, then `runs_per_token_per_s`."""
_FRAME_BURST: Final = 2.0
_MAX_TRACKED: Final = 10_000
"""Tokens whose run buckets are kept; past it, the buckets already full are dropped."""


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; `take()` spends one."""

    __slots__ = ("_at", "_level", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float | None = None) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._level = self.burst
        self._at = time.monotonic() if now is None else now

    def take(self, now: float | None = None) -> float:
        """0.0 if a token was spent, else the seconds until one will be there."""
        now = time.monotonic() if now is None else now
        self._level = min(self.burst, self._level + (now - self._at) * self.rate)
        self._at = now
        if self._level >= 1.0:
            self._level -= 1.0
            return 0.0
        return (1.0 - self._level) / self.rate if self.rate > 0 else math.inf

    def full(self, now: float) -> bool:
        return self._level + (now - self._at) * self.rate >= self.burst


class RunLimiter:
    """Run submissions per token `jti` (`runs_per_token_per_s`, bursts of 5)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, jti: str) -> None:
        """Spend one submission of `jti`, or raise RateLimited with the seconds to wait."""
        now = time.monotonic()
        bucket = self._buckets.get(jti)
        if bucket is None:
            if len(self._buckets) >= _MAX_TRACKED:
                self._forget_full(now)
            bucket = self._buckets[jti] = TokenBucket(self.rate, _RUN_BURST * self.rate, now)
        wait = bucket.take(now)
        if wait:
            raise RateLimited(
                "runs_per_token_per_s",
                f"this token may submit {self.rate:g} runs per second; slow down",
                _retry_after(wait),
            )

    def _forget_full(self, now: float) -> None:
        self._buckets = {k: b for k, b in self._buckets.items() if not b.full(now)}


class FrameLimiter:
    """Client frames of one WebSocket (`ws_frames_per_s`, bursts of twice that).

    `admit()` is False for a frame over the rate (the socket gets a
    `rate_limited` error frame for it). Refusals have their own bucket,
    `ws_flood_close_after` of them and one more a second: a client that keeps
    sending past that is `flooding`, and the socket is closed with 1008.
    """

    __slots__ = ("_frames", "_refusals", "flooding")

    def __init__(self, settings: Settings) -> None:
        rate = settings.ws_frames_per_s
        self._frames = TokenBucket(rate, _FRAME_BURST * rate)
        self._refusals = TokenBucket(1.0, settings.ws_flood_close_after)
        self.flooding = False

    def admit(self) -> bool:
        if self._frames.take() == 0.0:
            return True
        if self._refusals.take() != 0.0:
            self.flooding = True
        return False


def _retry_after(wait_s: float) -> int:
    """Whole seconds for `Retry-After` (at least 1: the header has no fractions)."""
    return max(1, math.ceil(wait_s)) if math.isfinite(wait_s) else 60
