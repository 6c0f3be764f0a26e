"""The metrics process: events -> reducer -> snapshots on NATS and in KV, aggregates on /metrics.

    startup:   streams and buckets, lease, durable consumer (resumes after
               its ack floor), load the reducer states from KV; with
               `metrics_partitions` N > 1, only this partition's sessions
               (consumers/archive/partition.py: the archive's partitioning)
    main loop: deliveries (gathered until the tick) -> applied in seq
               order -> every `progress_interval_s`: publish changed
               snapshots (progress subject + `agentcast_sessions`); every
               `progress_store_s`: store changed states (`agentcast_progress`),
               then AckAll
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

import logging
import time
from typing import Final

import msgspec
from nats.aio.client import Client
from nats.js.kv import KeyValue

from agentcast.bus import ensure_streams
from agentcast.codec import (
    decode_event,
    decode_loose,
    encode,
    msgpack_decoder_of,
    msgpack_encoder,
)
from agentcast.events import AnyEvent, Event
from agentcast.progress import ProgressSnapshot
from agentcast.sessions import is_valid_session_id
from agentcast.settings import Settings
from agentcast.subjects import SESSIONS_BUCKET, progress_subject
from consumers.archive.partition import ensure_source, partition_of
from consumers.buckets import BatchPut, bucket, current_values
from consumers.consumer import LeasedConsumer
from consumers.lease import METRICS_LEASES_BUCKET
from consumers.progress.learning import Learning
from consumers.progress.prometheus import ProgressMetrics
from consumers.progress.reducer import SessionState, at_least, new_state, snapshot
from consumers.pull import Delivery
from consumers.suspects import Reason
from consumers.telemetry import telemetry_from

logger = logging.getLogger(__name__)

STATES_BUCKET: Final = "agentcast_progress"
_encode_state = msgpack_encoder.encode
_decode_state = msgpack_decoder_of(SessionState).decode


class ProgressService(LeasedConsumer[Event | AnyEvent]):
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
        """Sessions applied to since the last snapshot publish."""
        self._unstored: set[str] = set()
        """Sessions whose state changed since it was last stored."""
        self._store_due = 0.0
        self._puts = BatchPut(nc)
        self._session_token = 2
        self._idle_after_ns = int(settings.idle_after_s * 1e9)
        self._store: KeyValue | None = None
        self.applied = 0
        self.telemetry = telemetry_from(settings)  # OpenTelemetry GenAI, when configured
        self._durable = settings.metrics_consumer
        self.learning = Learning(self._durable)
        self._handling = 0
        """The stream position of the delivery being handled (0 in a tick)."""

    async def startup(self) -> None:
        s = self.settings
        logger.info("Metrics starting")
        await ensure_streams(self.js, s)
        self._store = await bucket(
            self.js,
            STATES_BUCKET,
            "metrics reducer state per session (internal)",
            s.events_max_age_s,
        )
        data = s.resolved_data_dir()
        data.mkdir(parents=True, exist_ok=True)
        src = await ensure_source(
            self.js, s, s.metrics_partition, s.metrics_partitions, s.metrics_consumer
        )
        self._session_token = src.session_token
        # Positions are the durable's stream's: each durable learns (and stores) its own history.
        self._durable = src.durable
        self.learning = Learning(src.durable)
        await self.open(
            lock_dir=data,
            stream=src.stream,
            durable=src.durable,
            filter_subject=src.filter_subject,
            lease_ttl_s=s.metrics_lease_ttl_s,
            lease_bucket=METRICS_LEASES_BUCKET,
            sourced=src.sourced,
        )
        await self._load()
        logger.info("Metrics ready (%d sessions loaded)", len(self.states))

    async def reset(self) -> None:
        # Another metrics process may have stored newer states meanwhile: start from the KV.
        self.states.clear()
        self._published.clear()
        self._dirty.clear()
        self._unstored.clear()
        self.learning = Learning(self._durable)
        await self._load()

    async def _load(self) -> None:
        assert self._store is not None
        for key, value in await current_values(self._store):
            if self.learning.load(key, value):
                continue
            state = _decode_state(value)
            if not self._mine(state.session):
                continue  # another partition's session
            self.states[state.session] = state
            # As last published before any idle overlay: an idle flip is published anew.
            self._published[state.session] = snapshot(state)
        self.metrics.set_states(self._view_states())

    # -- events ----------------------------------------------------------------------

    def handle(self, delivery: Delivery) -> None:
        d = delivery
        # agentcast.evt.<session>.<type> (or agentcast.archive.<p>.<session>.<type>),
        # split without a regex per event: the envelope's session must match, and
        # a new session's id is validated once.
        at = self._session_token
        parts = d.subject.split(".", at + 1)
        event: Event | AnyEvent | None
        try:
            try:
                event = decode_event(d.data)
            except msgspec.ValidationError:
                event = decode_loose(d.data)  # a type (or field) newer than this reader
        except msgspec.DecodeError:
            event = None
        ok = event is not None and len(parts) == at + 2 and event.session == parts[at]
        if not ok or (parts[at] not in self.states and not is_valid_session_id(parts[at])):
            # Not an envelope of this session: nothing to count.
            logger.warning("Skipping message %d on %s", d.stream_seq, d.subject)
            self.acks.append((d.stream_seq, d.reply))
            return
        assert event is not None
        self._handling = d.stream_seq
        self.in_order(parts[at], event.seq, d, event)

    def _mine(self, session: str) -> bool:
        s = self.settings
        n = s.metrics_partitions
        return n == 1 or partition_of(session, n) == s.metrics_partition

    def last_seq(self, session: str) -> int:
        state = self.states.get(session)
        return state.last_seq if state is not None else 0

    def apply(self, session: str, item: Event | AnyEvent, delivery: Delivery) -> None:
        state = self.states.get(session) or new_state(session)
        # Learned at the position that released it, which a replay releases it at too.
        after = self.learning.apply(state, item, max(delivery.stream_seq, self._handling))
        # The type as the subject names it (its last token).
        at = self._session_token
        self.metrics.observe(state, after, item, delivery.subject.split(".", at + 1)[at + 1])
        self.telemetry.observe(item)
        self.states[session] = after
        self._dirty.add(session)
        self._unstored.add(session)
        self.applied += 1

    def suspect(
        self, session: str, seq: int, delivery: Delivery, reason: Reason, detail: str
    ) -> None:
        self.metrics.suspects.count(reason)
        logger.error(
            "Session %s: dropped suspected forgery seq %d (message %d, %s: %s)",
            session,
            seq,
            delivery.stream_seq,
            reason,
            detail,
        )

    def skip_to(self, session: str, next_seq: int) -> None:
        state = self.states.get(session) or new_state(session)
        self.states[session] = msgspec.structs.replace(state, last_seq=next_seq - 1)

    async def tick(self) -> None:
        self._handling = 0
        self.expire_gaps()
        await self.commit()

    # -- publishing ------------------------------------------------------------------

    async def persist(self, final: bool) -> bool:
        """Publish changed snapshots; every `progress_store_s` (or `final`), store changed states.

        Only a tick that stored the states lets acks follow (True): a restart
        replays what came after the stored states, so they stay exact.
        """
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
        snaps = ((s.session, encode(s)) for s in changed)
        await self._puts.put_many(SESSIONS_BUCKET, snaps, self.lease_left_s())
        for snap in changed:
            self._published[snap.session] = snap
        if changed:
            self.metrics.set_states(self._view_states(now))
        self._dirty.clear()
        self.metrics.lag.set(self.puller.pending)
        if not final and self._unstored and time.monotonic() < self._store_due:
            return False
        # The learned history before the states: a state stored is never ahead of it.
        if (learned := self.learning.entry()) is not None:
            await self._puts.put_many(STATES_BUCKET, [learned], self.lease_left_s())
            self.learning.stored()
        states = ((k, _encode_state(self.states[k])) for k in self._unstored)
        await self._puts.put_many(STATES_BUCKET, states, self.lease_left_s())
        self._unstored.clear()
        self._store_due = time.monotonic() + self.settings.progress_store_s
        return True

    def _view_states(self, now: int = 0) -> list[str]:
        return [snapshot(s, now, self._idle_after_ns).state for s in self.states.values()]
