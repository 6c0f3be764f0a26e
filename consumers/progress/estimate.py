"""The estimated percent of a run, its ETA and confidence, from what similar runs took (pure).

A run's `Prior` is fixed when it is queued (consumers/progress/history.py
learns it from earlier completed runs): the expected wall time and the
expected work (model messages + tool results + text/1000 chars, the
reducer's `work`). While the run goes on

    time fraction  t = elapsed / expected duration
    work fraction  w = work / expected work
    blend          b = TIME_WEIGHT * t + (1 - TIME_WEIGHT) * w
    percent        = 100 * b up to KNEE, then bending towards CEILING

Both fractions only grow (elapsed with the clock, work with events) and the
prior does not change during the run, so the percent only rises; the bend
keeps it below 100 however long a run overruns. With no history at all the
prior is `COLD`, a typical short agent run.

ETA = elapsed * (100 - percent) / percent: the time the bar itself implies,
so the two never disagree. Confidence is how much the prior can be trusted:
more similar runs and a smaller spread between them give more; a run past
its expected end gives less.
"""

from __future__ import annotations

import math
from typing import Final, Literal

import msgspec

CEILING: Final = 99.0
KNEE: Final = 85.0
TIME_WEIGHT: Final = 0.7
PriorSource = Literal["cold", "all", "kind"]


class Prior(msgspec.Struct, frozen=True, array_like=True):
    """What a run is expected to take; `runs` similar completed runs back it (0: none)."""

    duration_ms: float
    work: float
    runs: int = 0
    spread: float = 1.0
    """Median relative deviation of those runs' durations (0 = all alike)."""
    source: PriorSource = "cold"


# No history: a short agent run (a few turns, some tools, a couple of seconds of CLI start).
COLD: Final = Prior(duration_ms=8000.0, work=12.0)


def fraction(prior: Prior, elapsed_ms: float, work: float) -> float:
    """The blended fraction of the run done (may exceed 1 when the run overruns)."""
    t = max(0.0, elapsed_ms) / prior.duration_ms
    w = max(0.0, work) / prior.work
    return TIME_WEIGHT * t + (1 - TIME_WEIGHT) * w


def percent_of(frac: float) -> float:
    """A fraction as a percent: linear up to KNEE, then bending towards CEILING, never past it."""
    p = 100.0 * max(0.0, frac)
    if p > KNEE:
        room = CEILING - KNEE
        p = KNEE + room * (1 - math.exp(-(p - KNEE) / room))
    return math.floor(p * 10) / 10


def eta_ms(percent: float, elapsed_ms: float) -> int | None:
    """The remaining time the percent implies; None before anything is known."""
    if percent <= 0 or elapsed_ms <= 0:
        return None
    return int(elapsed_ms * (100.0 - percent) / percent)


def confidence(prior: Prior, frac: float) -> float:
    """0..1: how far the percent can be trusted."""
    if prior.source == "cold":
        base = 0.1
    else:
        similar = prior.runs / (prior.runs + 2)
        base = similar * max(0.1, 1.0 - prior.spread) * (1.0 if prior.source == "kind" else 0.5)
    # Past its expected end the run is not like the others: trust fades with the overrun.
    return round(base / max(1.0, frac), 2)
