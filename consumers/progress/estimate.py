"""The estimated percent of a run, its ETA and confidence, from what similar runs took (pure).

A run's `Prior` is fixed when it is queued (consumers/progress/history.py
learns it from earlier completed runs): the expected wall time D and the
expected work W (model messages + tool results + text/1000 chars, the
reducer's `work`). While the run goes on, with elapsed time e and work w:

- runs of its kind have completed (the prior's source is "kind"):
      b = a * e/D + (1 - a) * w/W,   a = 1 - spread, within [TIME_WEIGHT, KIND_TIME_WEIGHT]
  runs that took alike make time the better guide; a kind whose runs vary
  leans on the work done;
- none has (source "all": the median of every run; "cold": `COLD`, no
  history at all): the length is a guess, so both measures bend, each at
  half at the guess, time with a long tail for runs far longer than it:
      b = 0.8 * x/(1 + x) + 0.2 * (w/W)/(1 + w/W),   x = (e / (D/2))^0.6
- percent = 100 * b up to KNEE, then bending towards CEILING.

Both measures only grow (elapsed with the clock, work with events) and the
prior does not change during the run, so the percent only rises; the bend
keeps it below 100 however long a run overruns.

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
KIND_TIME_WEIGHT: Final = 0.95
# With no runs of the kind (tuned on the scripted scenarios, bench/progress_bench.py --cold).
_UNKNOWN_TIME_WEIGHT: Final = 0.8
_HALF: Final = 0.5
_SHAPE: Final = 0.6
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
COLD: Final = Prior(duration_ms=3000.0, work=8.0)


def fraction(prior: Prior, elapsed_ms: float, work: float) -> float:
    """The blended fraction of the run done (may exceed 1 when the run overruns its kind's time)."""
    elapsed, work = max(0.0, elapsed_ms), max(0.0, work)
    if prior.source == "kind":
        weight = time_weight(prior)
        return weight * elapsed / prior.duration_ms + (1 - weight) * work / prior.work
    # Nothing known of this kind: its length is a guess, so each measure bends, halfway at
    # the guess (time at `_HALF` of it, with a long tail for the runs far longer), never at 1.
    t: float = (elapsed / (_HALF * prior.duration_ms)) ** _SHAPE
    w = work / prior.work
    return _UNKNOWN_TIME_WEIGHT * t / (1 + t) + (1 - _UNKNOWN_TIME_WEIGHT) * w / (1 + w)


def time_weight(prior: Prior) -> float:
    """How much the time fraction counts: runs of one kind that took alike make time the better guide."""
    if prior.source != "kind":
        return TIME_WEIGHT
    return max(TIME_WEIGHT, min(KIND_TIME_WEIGHT, 1.0 - prior.spread))


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
