"""The metrics process: events -> reducer -> snapshots on NATS and in KV, aggregates on /metrics.

    startup:   streams and buckets, lease, durable consumer (resumes after
               its ack floor), load the reducer states from KV
    main loop: deliveries -> applied in seq order -> every
               `progress_interval_s`: publish changed snapshots (progress
               subject + `agentcast_sessions`), store changed states
               (`agentcast_progress`), then AckAll
    shutdown:  a last commit, give the lease back

Why restarts are exact: a state is stored with the seq it has applied, and
only acked after it is stored; a restart loads the states and the consumer
delivers again everything after its ack floor, where events at or below a
session's stored seq are recognised and skipped. Snapshots are a function of
the state, so they come out the same.

Forgeries change nothing: a repeated seq is skipped like a redelivery, and a
far-ahead seq is held back and dropped (logged, counted in
`agentcast_suspect_events_total`) once the session's in-order events overtake
it (consumers/holdback.py), so neither touches a snapshot's state or counts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterable
from typing import Final

import msgspec
from nats.aio.client import Client
from nats.js.kv import KeyValue

from agentcast.bus import ensure_streams
from agentcast.codec import decode_event, decode_loose, encode
from agentcast.events import AnyEvent, Event, type_of
from agentcast.progress import ProgressSnapshot
from agentcast.sessions import is_valid_session_id
from agentcast.settings import Settings
from agentcast.subjects import EVENTS_ALL, EVENTS_STREAM, progress_subject
from consumers.buckets import bucket
from consumers.consumer import LeasedConsumer
from consumers.holdback import Held
from consumers.progress.learning import Learning
from consumers.progress.prometheus import ProgressMetrics
from consumers.progress.reducer import SessionState, at_least, new_state, snapshot
from consumers.pull import Delivery
from consumers.suspects import Reason

logger = logging.getLogger(__name__)

STATES_BUCKET: Final = "agentcast_progress"
_KV_CONCURRENCY: Final = 256
_encode_state = msgspec.msgpack.Encoder().encode
_decode_state = msgspec.msgpack.Decoder(SessionState).decode


class ProgressService(LeasedConsumer[tuple[Event | AnyEvent, str]]):
    """Per-session progress for every session in the stream."""

    name = "Metrics"

    def __init__(
        self, settings: Settings, nc: Client, metrics: ProgressMetrics | None = None
    ) -> None:
        super().__init__(settings, nc)
        self.tick_s = settings.progress_interval_s
        self.metrics = metrics or ProgressMetrics()
        self.states: dict[str, SessionState] = {}
        self._published: dict[str, ProgressSnapshot] = {}
        self._dirty: set[str] = set()
        self._idle_after_ns = int(settings.idle_after_s * 1e9)
        self._snapshots: KeyValue | None = None
        self._store: KeyValue | None = None
        self.applied = 0
        self.learning = Learning(settings.metrics_consumer)

    async def startup(self) -> None:
        s = self.settings
        logger.info("Metrics starting")
        self._snapshots = await ensure_streams(self.js, s)
        self._store = await bucket(
            self.js,
            STATES_BUCKET,
            "metrics reducer state per session (internal)",
            s.events_max_age_s,
        )
        data = s.resolved_data_dir()
        data.mkdir(parents=True, exist_ok=True)
        await self.open(
            lock_dir=data,
            stream=EVENTS_STREAM,
            durable=s.metrics_consumer,
            filter_subject=EVENTS_ALL,
        )
        await self._load()
        logger.info("Metrics ready (%d sessions loaded)", len(self.states))

    async def reset(self) -> None:
        # Another metrics process may have stored newer states meanwhile: start from the KV.
        self.states.clear()
        self._published.clear()
        self._dirty.clear()
        self.learning = Learning(self.settings.metrics_consumer)
        await self._load()

    async def _load(self) -> None:
        assert self._store is not None
        watcher = await self._store.watchall(ignore_deletes=True)
        try:
            while (entry := await watcher.updates(timeout=30)) is not None:  # type: ignore[no-untyped-call]
                if entry.value and not self.learning.load(entry.key, entry.value):
                    state = _decode_state(entry.value)
                    self.states[state.session] = state
                    # As last published before any idle overlay: an idle flip is published anew.
                    self._published[state.session] = snapshot(state)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        self.metrics.set_states(self._view_states())

    # -- events ----------------------------------------------------------------------

    def handle(self, delivery: Delivery) -> None:
        d = delivery
        # agentcast.evt.<session>.<type>, split without a regex per event: the
        # envelope's session must match, and a new session's id is validated once.
        parts = d.subject.split(".", 3)
        event: Event | AnyEvent | None
        try:
            try:
                event = decode_event(d.data)
            except msgspec.ValidationError:
                event = decode_loose(d.data)  # a type (or field) newer than this reader
        except msgspec.DecodeError:
            event = None
        state = None
        if event is not None and len(parts) == 4 and event.session == parts[2]:
            state = self.states.get(parts[2])
            if state is None and is_valid_session_id(parts[2]):
                state = new_state(parts[2])
        if event is None or state is None:
            # Not an envelope of this session: nothing to count.
            logger.warning("Skipping message %d on %s", d.stream_seq, d.subject)
            self.acks.append((d.stream_seq, d.reply))
            return
        session, kind = parts[2], parts[3]
        if event.seq > state.last_seq + 1:
            other = self.held.hold(session, event.seq, d.stream_seq, (event, d.reply))
            if other is not None:
                self._suspect(other, "repeated_seq")
            return
        self.acks.append((d.stream_seq, d.reply))
        if event.seq <= state.last_seq:
            return  # a redelivery, or a repeated seq: never applied twice
        self._apply(state, event, kind, d.stream_seq)
        if self.held:
            for gone in self.held.applied(session, event.seq, d.stream_seq):
                self._suspect(gone, "repeated_seq")
            self._release(session, d.stream_seq)

    def _apply(
        self, state: SessionState, event: Event | AnyEvent, kind: str, position: int
    ) -> None:
        after = self.learning.apply(state, event, position)
        self.metrics.observe(state, after, event, kind)
        self.states[state.session] = after
        self._dirty.add(state.session)
        self.applied += 1

    def _suspect(self, held: Held[tuple[Event | AnyEvent, str]], reason: Reason) -> None:
        """Drop a held event its session's writer cannot have written (counted, logged)."""
        event, reply = held.item
        self.acks.append((held.stream_seq, reply))
        self.metrics.suspects.count(reason)
        logger.error(
            "Session %s: dropped suspected forgery seq %d (message %d, %s)",
            event.session,
            held.seq,
            held.stream_seq,
            reason,
        )

    def _release(self, session: str, after_stream_seq: int) -> None:
        state = self.states[session]
        for held in self.held.release(session, state.last_seq + 1, after_stream_seq):
            event, reply = held.item
            self.acks.append((held.stream_seq, reply))
            # Learned at the position that released it (what a replay releases it at too).
            position = max(held.stream_seq, after_stream_seq)
            self._apply(self.states[session], event, _kind(event), position)

    async def tick(self) -> None:
        for session in self.held.expired():
            for gone in self.held.overtaken(session):
                self._suspect(gone, "far_ahead")
            first = self.held.first_held(session)
            if first is None:
                continue
            state = self.states.get(session) or new_state(session)
            logger.error(
                "Session %s: seqs %d..%d never arrived", session, state.last_seq + 1, first - 1
            )
            self.states[session] = msgspec.structs.replace(state, last_seq=first - 1)
            self._release(session, 0)
        await self.commit()

    # -- publishing ------------------------------------------------------------------

    async def persist(self) -> None:
        """Publish changed snapshots, then store the changed states (acks follow)."""
        assert self._snapshots is not None and self._store is not None
        now = time.time_ns()
        changed: list[ProgressSnapshot] = []
        for session, state in self.states.items():
            # A queued or running run's percent moves with the clock: the CLI's start is time too.
            if session not in self._dirty and state.state not in ("running", "queued"):
                continue
            # As of the middle of the interval it will be shown for (its percent moves with time).
            at = now + int(self.settings.progress_interval_s * 5e8)
            snap = at_least(snapshot(state, at, self._idle_after_ns), self._published.get(session))
            if self._published.get(session) != snap:
                changed.append(snap)
        for snap in changed:
            await self.nc.publish(progress_subject(snap.session), encode(snap))
        snapshots, store = self._snapshots, self._store
        await _bounded(snapshots.put(s.session, encode(s)) for s in changed)
        # The learned history before the states: a state stored is never ahead of it.
        if (learned := self.learning.entry()) is not None:
            await store.put(*learned)
            self.learning.stored()
        await _bounded(store.put(k, _encode_state(self.states[k])) for k in self._dirty)
        for snap in changed:
            self._published[snap.session] = snap
        if changed:
            self.metrics.set_states(self._view_states(now))
        self._dirty.clear()
        self.metrics.lag.set(self.puller.pending)

    def _view_states(self, now: int = 0) -> list[str]:
        return [snapshot(s, now, self._idle_after_ns).state for s in self.states.values()]


def _kind(event: Event | AnyEvent) -> str:
    return event.type if isinstance(event, AnyEvent) else type_of(event)


async def _bounded(calls: Iterable[Awaitable[object]]) -> None:
    """Run KV puts concurrently, a bounded number at a time."""
    pending: set[asyncio.Future[object]] = set()
    for call in calls:
        pending.add(asyncio.ensure_future(call))
        if len(pending) >= _KV_CONCURRENCY:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for fut in done:
                fut.result()
    if pending:
        for result in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result
