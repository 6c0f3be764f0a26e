"""agentcast/memory.py: a set grown for a crowd gives its table back once the crowd has gone."""

from __future__ import annotations

import sys

from agentcast.memory import compact_set


def test_a_mostly_empty_big_set_shrinks_in_place_and_keeps_what_is_left() -> None:
    crowd = set(range(5000))
    shared = crowd  # uvicorn hands one set to every connection: its identity must hold
    grown = sys.getsizeof(crowd)
    for n in range(10, 5000):
        crowd.discard(n)
    assert sys.getsizeof(crowd) == grown  # CPython keeps the table on removal
    compact_set(crowd)
    assert shared is crowd and crowd == set(range(10))
    assert sys.getsizeof(crowd) < grown // 20


def test_a_set_still_in_use_or_small_is_left_alone() -> None:
    busy = set(range(5000))
    for n in range(2000):
        busy.discard(n)
    size = sys.getsizeof(busy)
    compact_set(busy)
    assert sys.getsizeof(busy) == size and len(busy) == 3000
    small = set(range(100))
    for n in range(99):
        small.discard(n)
    size = sys.getsizeof(small)
    compact_set(small)
    assert sys.getsizeof(small) == size and small == {99}
