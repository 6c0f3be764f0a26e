"""What completed runs took, learned across all sessions (pure): the priors of new runs.

Two tables, each a short window of recent samples per key:
- runs, by the prompt's kind (its first words: runs started the same way
  tend to do the same work) and under `ALL` for every run: wall time and
  work of each completed run;
- plan items, by their normalised text: how long an item of a TodoWrite or
  task plan took from in progress to completed.

A new run's prior is the median of its kind's window, else of all runs,
else `estimate.COLD`; a plan item's weight is the median of its window.

Exact rebuilds: every sample carries the stream position (the events
stream's sequence number) of the event that completed it, the history
records the last position it folded in, and lookups take `before`, the
position of the event asking. A restart that delivers events again
re-learns nothing at or below `position`, and an event applied again sees
exactly the samples it saw the first time (up to `_WINDOW` of a key per
commit interval, as the stored window is twice the one used).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable
from typing import Final

import msgspec

from agentcast.codec import msgpack_decoder_of, msgpack_encoder
from consumers.progress.estimate import COLD, Prior

ALL: Final = "*"
_WINDOW: Final = 12
_KEPT: Final = 2 * _WINDOW
_MAX_KINDS: Final = 256
_MAX_ITEMS: Final = 1024
_KIND_WORDS: Final = 3
_WORD: Final = re.compile(r"[a-z0-9]+")


class Sample(msgspec.Struct, frozen=True, array_like=True):
    position: int
    duration_ms: int
    work: float = 0.0


class History(msgspec.Struct, frozen=True, kw_only=True):
    position: int = 0
    """The last stream position folded in: a redelivered event at or below it is not learned again."""
    runs: dict[str, tuple[Sample, ...]] = {}
    items: dict[str, tuple[Sample, ...]] = {}


EMPTY: Final = History()
_encoder: Final = msgpack_encoder
_decoder: Final = msgpack_decoder_of(History)


def encode_history(history: History) -> bytes:
    return _encoder.encode(history)


def decode_history(raw: bytes) -> History:
    return _decoder.decode(raw)


def kind_of(prompt: str) -> str:
    """The kind of a prompt: its first few words, lower case, without punctuation."""
    return " ".join(_WORD.findall(prompt.lower())[:_KIND_WORDS])


def item_key(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))[:120]


def learn(
    history: History,
    position: int,
    kind: str,
    duration_ms: int,
    work: float,
    items: Iterable[tuple[str, int]] = (),
) -> History:
    """The history after a run completed at stream `position` (unchanged if already folded in)."""
    if position <= history.position:
        return history
    sample = Sample(position, duration_ms, work)
    runs = _add(history.runs, ALL, sample, _MAX_KINDS)
    if kind:
        runs = _add(runs, kind, sample, _MAX_KINDS)
    table = history.items
    for label, ms in items:
        table = _add(table, label, Sample(position, ms), _MAX_ITEMS)
    return History(position=position, runs=runs, items=table)


def prior(history: History, kind: str, before: int | None = None) -> Prior:
    """The expectation for a new run of `kind`, from samples before stream position `before`."""
    if samples := _window(history.runs.get(kind, ()), before):
        return _prior(samples, "kind")
    if samples := _window(history.runs.get(ALL, ()), before):
        return _prior(samples, "all")
    return COLD


def item_ms(history: History, label: str, before: int | None = None) -> float | None:
    """How long items like `label` took (median), or None when none has completed."""
    samples = _window(history.items.get(label, ()), before)
    return statistics.median(s.duration_ms for s in samples) if samples else None


def _prior(samples: list[Sample], source: str) -> Prior:
    duration = max(1.0, statistics.median(s.duration_ms for s in samples))
    spread = statistics.median(abs(s.duration_ms - duration) for s in samples) / duration
    work = max(1.0, statistics.median(s.work for s in samples))
    return Prior(duration, work, len(samples), round(spread, 3), source)  # type: ignore[arg-type]


def _window(samples: tuple[Sample, ...], before: int | None) -> list[Sample]:
    kept = [s for s in samples if before is None or s.position < before]
    return kept[-_WINDOW:]


def _add(
    table: dict[str, tuple[Sample, ...]], key: str, sample: Sample, max_keys: int
) -> dict[str, tuple[Sample, ...]]:
    # The key moves to the end (most recently learned); the least recent keys go first.
    samples = (*table.get(key, ()), sample)[-_KEPT:]
    out = {k: v for k, v in table.items() if k != key}
    out[key] = samples
    while len(out) > max_keys:
        del out[next(iter(out))]
    return out
