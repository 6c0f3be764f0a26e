"""Replay batches read from JetStream once and shared by every replay that may use them.

A reconnect storm is many clients replaying the same sessions from the same
places (`from=start`, or the cursor every client of a finished session holds).
Each batch read is keyed by what it asks for (subject, first sequence, count,
byte bound); a replay that asks the same while the read is on its way, or
soon after, gets the same answer (the same Frames, so their framing is shared
too) instead of another read. Recent answers stay in a small LRU bounded in
entries and bytes, so the cache costs memory per distinct batch, not per client.

When an answer may be shared (see the hand-over in gateway/feed.py):
- A *full* batch (more matching messages after it) never goes stale: the
  stream only appends, so the first N matching messages from a sequence on
  stay the same. Anyone may use it.
- The *last* batch (nothing matching after it) is only true as of its read:
  a replay may use it only if it was sent after that replay attached to its
  live topic, or an event stored in between would be in neither the replay
  nor the live feed. Replays take a tick (`mark()`) once attached; a read
  remembers the tick it was sent at, and serves those marked no later.
- Or, when it was sent after the replay's topic itself subscribed (the topic's
  own tick), if it reaches as far as every live event the topic had seen when
  the replay attached: whatever was stored after the read came to the topic
  live, and none had come before the replay attached, so the replay hears it.
  Replays of a finished session that arrive one wave after another (browsers
  retrying with jitter, a storm let in from parking) then share one read.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from gateway.frames import Frame
from gateway.telemetry import Stats

MAX_ENTRIES: Final = 128
MAX_BYTES: Final = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Batch:
    frames: list[Frame]
    pending: int
    """Matching messages left after the last one in `frames`."""

    @property
    def size(self) -> int:
        return sum(len(f.payload) for f in self.frames)


Key = tuple[str, int, int, int]
"""(subject, first sequence, max messages, max bytes)"""


@dataclass(slots=True)
class _Entry:
    sent: int
    task: asyncio.Task[Batch]
    size: int = 0


def _reach(key: Key, found: Batch) -> int:
    """The last stream sequence an answer speaks for (up to its read's first one, if empty)."""
    return found.frames[-1].seq if found.frames else key[1] - 1


class SharedBatches:
    """In-flight and recent batch reads by key (see the module docstring)."""

    def __init__(
        self, stats: Stats, *, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES
    ) -> None:
        self._stats = stats
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._bytes = 0
        self._tick = 0

    def mark(self) -> int:
        """A tick for a replay that has just attached to its live topic."""
        self._tick += 1
        return self._tick

    async def get(
        self, key: Key, since: int, read: Callable[[], Awaitable[Batch]], *,
        live_mark: int = -1, live_seen: int = 0,
    ) -> Batch:  # fmt: skip
        """The batch for `key` as read by a request sent at tick `since` or later, or any
        full batch for it, or a last batch sent at the topic's tick `live_mark` or later that
        reaches `live_seen` (the topic's last live sequence when the replay attached);
        `read()` is called only when no such answer is on hand."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            try:
                # Shielded: one replay leaving must not cancel a read others wait for.
                found = await asyncio.shield(entry.task)
            except Exception:  # a failed read is retried by a fresh one below
                if entry.sent >= since:
                    raise
            else:
                if (
                    entry.sent >= since
                    or (found.pending > 0 and found.frames)
                    or (0 <= live_mark <= entry.sent and live_seen <= _reach(key, found))
                ):
                    self._stats.replay_reads_shared += 1
                    return found
        return await asyncio.shield(self._read(key, read).task)

    def _read(self, key: Key, read: Callable[[], Awaitable[Batch]]) -> _Entry:
        self._stats.replay_reads += 1
        entry = _Entry(self._tick, asyncio.ensure_future(read()))
        self._forget(key)
        self._entries[key] = entry
        entry.task.add_done_callback(lambda task: self._settle(key, entry))
        return entry

    def _settle(self, key: Key, entry: _Entry) -> None:
        task = entry.task
        if task.cancelled() or task.exception() is not None:
            if self._entries.get(key) is entry:
                self._forget(key)  # the next ask reads again
            return
        if self._entries.get(key) is not entry:
            return
        entry.size = task.result().size
        self._bytes += entry.size
        for oldest in list(self._entries):  # least recently used first
            if len(self._entries) <= self._max_entries and self._bytes <= self._max_bytes:
                break
            if self._entries[oldest].task.done():  # in flight: kept until it lands
                self._forget(oldest)

    def _forget(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size

    def clear(self) -> None:
        """Forget every answer that has landed (reads in flight stay for their waiters)."""
        for key in [k for k, e in self._entries.items() if e.task.done()]:
            self._forget(key)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes
