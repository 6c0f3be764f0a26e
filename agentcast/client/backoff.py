"""Reconnect delays: exponential with full jitter, so a restarted gateway is not stampeded."""

from __future__ import annotations

import random
from typing import Final

BASE_S: Final = 0.25
CAP_S: Final = 10.0


class Backoff:
    """`next()` is the delay before the next attempt; `reset()` after a healthy connection."""

    def __init__(self, base_s: float = BASE_S, cap_s: float = CAP_S) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempts = 0

    def next(self, hint_s: float | None = None) -> float:
        """A jittered delay; a server's hint (SSE `retry:`, `Retry-After`) sets its floor."""
        ceiling = min(self.cap_s, self.base_s * 2**self.attempts)
        self.attempts += 1
        delay = random.uniform(0, ceiling)
        return max(delay, hint_s) if hint_s is not None else delay

    def reset(self) -> None:
        self.attempts = 0
