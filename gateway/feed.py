"""One client subscription (a session, or the firehose): replay, then live, exactly once.

The hand-over from replay to live, without gap or duplicate:
1. The subscription attaches to its topic first, in catch-up mode: live
   frames from then on are held in `pending` (bounded; see below).
2. Replay reads JetStream in batches from the client's position until the
   server says nothing matching is left. Every event stored before that answer
   is in the replay; every event stored after it arrives live into `pending`,
   because the topic was subscribed before the replay began.
3. With no await in between, `pending` is played through the same
   `position` check as live frames (stream sequence > position), and the
   subscription goes live. Order and dedupe both rest on the stream sequence.
If `pending` outgrows the client's buffer it is dropped and replay simply
reads further (those events are in JetStream by the time they arrive live).

Replays hold a slot of the process's admission control (gateway/admission.py)
while they read, and share their batch reads with other replays of the same
batch (gateway/readcache.py) under the same rule as step 2: a last batch is
used only if it was read after this subscription attached (its `mark()`), or
after its topic subscribed if the topic heard nothing newer before this attached.
"""

from __future__ import annotations

import fnmatch
from typing import Final

from agentcast.cursor import format_cursor
from gateway.admission import Admission
from gateway.frames import Frame
from gateway.params import TypeFilter
from gateway.replay import DirectReader
from gateway.sink import Sink

_GLOB_CACHE_MAX: Final = 10_000
_MAX_CATCHUP_ROUNDS: Final = 1000


class SessionMatch:
    """Every glob must match the session id (request glob and token glob); cached."""

    __slots__ = ("_cache", "globs")

    def __init__(self, *globs: str) -> None:
        self.globs = tuple(dict.fromkeys(g for g in globs if g != "*"))
        self._cache: dict[str, bool] = {}

    def __call__(self, session: str) -> bool:
        hit = self._cache.get(session)
        if hit is None:
            if len(self._cache) >= _GLOB_CACHE_MAX:
                self._cache.clear()
            hit = all(fnmatch.fnmatchcase(session, g) for g in self.globs)
            self._cache[session] = hit
        return hit


class Subscription:
    """A client's interest in one topic, with its position in the stream."""

    __slots__ = (
        "catching_up",
        "detached",
        "dropped_upto",
        "live_mark",
        "live_seen",
        "name",
        "pending",
        "pending_bytes",
        "position",
        "replay_subject",
        "sessions",
        "since",
        "sink",
        "types",
    )  # fmt: skip

    def __init__(
        self,
        name: str,
        sink: Sink,
        replay_subject: str,
        *,
        after: int,
        types: TypeFilter | None,
        sessions: SessionMatch | None,
    ) -> None:
        self.name = name
        self.sink = sink
        self.types = types
        self.sessions = sessions if sessions is not None and sessions.globs else None
        self.replay_subject = replay_subject
        self.position = max(after, 0)
        """Every event up to this stream sequence was written to the client or filtered out."""
        self.catching_up = after >= 0
        self.pending: list[Frame] = []
        self.pending_bytes = 0
        self.dropped_upto = 0
        self.detached = False
        """Unsubscribed (set by its hub.Subscriber): a running catch-up stops."""
        self.since = -1
        """The reader's tick (`DirectReader.mark()`) once attached to the topic."""
        self.live_mark = -1
        self.live_seen = 0
        """The topic's own tick and its last live sequence when this attached (readcache.py);
        -1: not on hand (a replicated stream: each replay reads after its own sync)."""

    def wants(self, frame: Frame) -> bool:
        if self.types is not None and not self.types(frame.type):
            return False
        return self.sessions is None or self.sessions(frame.session)

    def on_live(self, frame: Frame) -> None:
        """Called by the topic for every live frame, in stream order."""
        if frame.seq <= self.position:
            return
        if self.catching_up:
            self.pending.append(frame)
            self.pending_bytes += len(frame.payload)
            if self.pending_bytes > self.sink.limit:
                self.dropped_upto = frame.seq
                self.pending.clear()
                self.pending_bytes = 0
            return
        if self.wants(frame) and not self.sink.offer(frame):
            return
        self.position = frame.seq

    def resume_cursor(self) -> str | None:
        return format_cursor(self.position) if self.position > 0 else None

    async def catch_up(self, reader: DirectReader, batch: int, admission: Admission) -> bool:
        """Replay from `position` to the end of the stream, then go live; False if the sink ended
        or the subscription was dropped. Raises ReplayBusy when no replay slot is to be had."""
        async with admission.slot(self._queued, self._gone) as admitted:
            if not admitted or self.detached or self.sink.reason is not None:
                return False
            return await self._replay(reader, batch)

    def _gone(self) -> bool:
        return self.detached or self.sink.reason is not None

    def _queued(self, ahead: int) -> None:
        if self.sink.kind == "sse":  # a comment: every SSE parser skips it
            self.sink.send(b": waiting for a replay slot, %d replays ahead\n\n" % ahead)

    async def _replay(self, reader: DirectReader, batch: int) -> bool:
        sink = self.sink
        if reader.replicated:
            # Events stored before this subscription attached never come live:
            # the replay must reach them, whichever replica answers it.
            await reader.sync()
            if self.detached:
                return False
            # Only reads sent after the sync reflect what the leader had stored.
            self.since = reader.mark()
        since = self.since if self.since >= 0 else reader.mark()
        for _ in range(_MAX_CATCHUP_ROUNDS):
            found = await reader.batch(
                self.position + 1, self.replay_subject, batch, sink.limit, since=since,
                live_mark=self.live_mark, live_seen=self.live_seen,
            )  # fmt: skip
            if self.detached:
                return False
            frames = found.frames
            wanted = [f for f in frames if self.wants(f)]
            if frames:
                sink.stats.replayed_events += len(frames)
                self.position = frames[-1].seq
            if wanted and not await sink.push(wanted):
                return False
            if found.pending == 0 and self.dropped_upto <= self.position:
                self._go_live()
                return True
        sink.finish("lagged")
        return False

    def _go_live(self) -> None:
        # No await between the replay's end and this switch: see the module docstring.
        pending, self.pending = self.pending, []
        self.pending_bytes = 0
        self.catching_up = False
        for frame in pending:
            self.on_live(frame)
