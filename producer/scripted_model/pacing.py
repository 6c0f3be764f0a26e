"""How long to wait before each streamed event (pure).

`speed` multiplies every delay: 0 means no delay at all (tests), 1.0 is
realistic (about 80 output tokens a second, +-30 % jitter, a short
time-to-first-token), 2.0 is twice as slow, 0.5 twice as fast.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .stream import SseEvent

__all__ = ["Pacing"]


@dataclass(frozen=True, slots=True)
class Pacing:
    speed: float = 1.0
    # Seconds before message_start at speed 1.0 (the API's time to first token).
    first_token_s: float = 0.4
    jitter: float = 0.3
    # No single wait is longer than this, whatever the scenario asks.
    max_wait_s: float = 5.0

    def __post_init__(self) -> None:
        if self.speed < 0:
            raise ValueError(f"speed must be >= 0, got {self.speed}")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be within [0, 1)")

    def _jittered(self, seconds: float, rng: random.Random) -> float:
        factor = rng.uniform(1 - self.jitter, 1 + self.jitter)
        return min(self.max_wait_s, self.speed * seconds * factor)

    def first_token(self, rng: random.Random) -> float:
        if self.speed == 0:
            return 0.0
        return self._jittered(self.first_token_s, rng)

    def before(self, event: SseEvent, tokens_per_second: float, rng: random.Random) -> float:
        """The wait before `event`: in proportion to the tokens it carries."""
        if self.speed == 0 or event.tokens == 0:
            return 0.0
        return self._jittered(event.tokens / tokens_per_second, rng)
