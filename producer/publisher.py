"""Event -> subject: one session's events to JetStream, in seq order, one writer per session.

`SessionPublisher.emit()` stamps each draft with the session's next `seq` (no
gaps), an id, a timestamp and the run, then queues it. One writer per
session, enforced by the stream: every event is published with
`Nats-Expected-Last-Subject-Sequence` = the stream sequence of the session's
previous event (over `agentcast.evt.<session>.>`), so JetStream refuses an
event from anyone not at the session's head: a zombie worker, a forged
producer, a worker that lost its claim. That sequence is known only once the
previous event's ack is back, so a session has one event in flight; sessions
stay pipelined among themselves (each ack publishes that session's next
event at once, from the ack callback: producer/acks.py). An agent emits tens
of events a second, far below one round trip per event.

Failure policy, in order of escalation:
- An ack that reports an error, or that has not come within `ack_timeout_s`
  (NATS restarting, JetStream recovering), switches the sender to recovery
  (producer/recovery.py). If the session's last stored event is not one this
  publisher wrote, another writer got in: the publisher fails with
  WriterConflict, loudly, and sends nothing more except the run's closing
  event (`run.failed`), when the session's head still belongs to this run
  (producer/conflict.py).
- While JetStream is unreachable, events wait in a bounded buffer
  (`publish_buffer`); `emit()` blocks when it is full, which holds back the
  agent rather than dropping anything.
- If the oldest undelivered event has waited `delivery_timeout_s`, the
  publisher fails: `emit()` and `drain()` raise DeliveryTimeout so the run is
  stopped loudly. The sender keeps trying, so a late recovery still delivers.

Crashes of nats-server that lose acked events: see producer/recovery.py.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time

from nats.errors import Error as NatsError

from agentcast.errors import DeliveryTimeout, PublishFailed, WriterConflict
from agentcast.events import Event, EventData
from agentcast.subjects import event_subject, session_events
from producer.acks import AckRouter
from producer.conflict import close_after_conflict
from producer.fastpub import publish_expecting
from producer.recovery import RETAIN_S, HeadRecovery
from producer.stamp import Outgoing, stamp

__all__ = ["Outgoing", "SessionPublisher", "stamp"]

logger = logging.getLogger(__name__)

_RETRY_PAUSE_S = 0.2


class SessionPublisher(HeadRecovery):
    """Publishes one session's events; owns their `seq` counter and the session's head."""

    def __init__(
        self,
        acks: AckRouter,
        session: str,
        *,
        next_seq: int,
        max_msg_size: int,
        last_stream_seq: int = 0,
        buffer: int = 10_000,
        ack_timeout_s: float = 5.0,
        delivery_timeout_s: float = 60.0,
    ) -> None:
        """`last_stream_seq` is the stream sequence of the session's event `next_seq - 1`
        (0: the session has none); a claim sets it later with `start_after()`."""
        self.session = session
        self._acks = acks
        self._next_seq = next_seq
        self._max_msg_size = max_msg_size
        self._ack_timeout_s = ack_timeout_s
        self._delivery_timeout_s = delivery_timeout_s
        # Every event not yet acknowledged, in seq order; the first is in flight if `_in_flight`.
        self._queue: collections.deque[Outgoing] = collections.deque()
        self._in_flight = False
        # Acked in the last RETAIN_S, oldest first: re-sent after a reconnect if the server lost them.
        self._retained: collections.deque[Outgoing] = collections.deque()
        # The newest event no longer kept (seq, stream seq): the base the kept ones follow.
        self._base = (next_seq - 1, last_stream_seq)
        self._last_stream_seq = last_stream_seq
        self._reconnects = acks.nc.stats["reconnects"]
        self._trouble = False
        self._buffer = buffer
        self._space_freed = asyncio.Event()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._failure: PublishFailed | None = None
        self._closing_event: Outgoing | None = None
        self.acked = 0
        self._subject_prefix = event_subject(session, "")
        self._session_filter = session_events(session)
        self._route, self._reply_prefix = acks.register(self._on_ack)
        self._sender = asyncio.create_task(self._send_loop(), name=f"publisher:{session}")

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def pending(self) -> int:
        return len(self._queue)

    @property
    def lost_session(self) -> bool:
        """Another writer got into the session (WriterConflict): this one must let it go."""
        return isinstance(self._failure, WriterConflict)

    def start_after(self, stream_seq: int) -> None:
        """The claim stored event `next_seq - 1` at `stream_seq`: the next publish expects it."""
        assert not self._queue and not self._retained, "start_after() before the first emit()"
        self._base = (self._next_seq - 1, stream_seq)
        self._last_stream_seq = stream_seq

    async def emit(
        self,
        data: EventData,
        *,
        run: int,
        parent_tool_use_id: str | None = None,
        after_failure: bool = False,
    ) -> Event:
        """Stamp and queue one event; returns it (possibly truncated).

        Raises the publisher's failure (DeliveryTimeout, WriterConflict) once
        it has failed, unless `after_failure`: the run's closing event must
        still be tried (after a WriterConflict, only if the head allows).
        """
        if not after_failure:
            self._raise_if_failed()
            await self._wait_for_space()
        item = stamp(
            data,
            session=self.session,
            seq=self._next_seq,
            run=run,
            max_msg_size=self._max_msg_size,
            parent_tool_use_id=parent_tool_use_id,
            subject_prefix=self._subject_prefix,
        )
        self._next_seq += 1
        self._idle.clear()
        if isinstance(self._failure, WriterConflict):
            self._closing_event = item
            self._wake.set()
            return item.event
        self._queue.append(item)
        if not self._in_flight:
            await self._send_first()
        return item.event

    async def drain(self, timeout_s: float | None = None) -> None:
        """Wait until every queued event is acknowledged by JetStream."""
        bound = self._delivery_timeout_s if timeout_s is None else timeout_s
        try:
            await asyncio.wait_for(self._idle.wait(), bound)
        except TimeoutError:
            self._raise_if_failed()
            raise DeliveryTimeout(self.session, len(self._queue), bound) from None
        self._raise_if_failed()

    async def close(self, timeout_s: float | None = None) -> None:
        """Drain, then stop the sender. Raises the failure if events remain undelivered."""
        try:
            await self.drain(timeout_s)
        finally:
            self._closing = True
            self._acks.unregister(self._route)
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)

    # -- the happy path: one in flight, the next sent by the ack ---------------------

    async def _send_first(self) -> None:
        """Publish the oldest unacknowledged event, expecting the session's last one."""
        nc = self._acks.nc
        if self._trouble or not nc.is_connected or nc.stats["reconnects"] != self._reconnects:
            self._wake.set()  # the sender task recovers first
            return
        item = self._queue[0]
        item.first_try = item.first_try or time.monotonic()
        # Set before the await: an ack may come back before publish() returns.
        self._in_flight = True
        try:
            await publish_expecting(
                nc,
                item.subject,
                item.payload,
                reply=f"{self._reply_prefix}{item.event.seq}",
                msg_id=item.event.id,
                expected=self._last_stream_seq,
                session_filter=self._session_filter,
            )
        except (NatsError, OSError) as exc:
            logger.debug("publish failed for %s: %r", self.session, exc)
            self._trouble = True
            self._wake.set()

    async def _on_ack(self, seq: int, stream_seq: int, error: int) -> None:
        if self._trouble or not self._in_flight or not self._queue:
            return  # recovery re-sends and confirms everything itself
        if self._queue[0].event.seq != seq:
            return  # a late ack of an event already retired
        if error:
            # Refused (10071: lost in a crash, or another writer) or unanswered:
            # recovery reads the head and tells which.
            self._trouble = True
            self._wake.set()
            return
        self._in_flight = False
        self._retire(stream_seq)
        if self._queue:
            await self._send_first()
        else:
            self._idle.set()

    def _retire(self, stream_seq: int) -> None:
        """The oldest event is stored at `stream_seq`: keep it a moment in case the server loses it."""
        item = self._queue.popleft()
        item.stream_seq = self._last_stream_seq = stream_seq
        self.acked += 1
        now = item.acked_at = time.monotonic()
        self._retained.append(item)
        while self._retained and now - self._retained[0].acked_at > RETAIN_S:
            old = self._retained.popleft()
            self._base = (old.event.seq, old.stream_seq)
        self._space_freed.set()

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def _wait_for_space(self) -> None:
        deadline = time.monotonic() + self._delivery_timeout_s
        while len(self._queue) >= self._buffer:
            self._space_freed.clear()
            try:
                await asyncio.wait_for(self._space_freed.wait(), deadline - time.monotonic())
            except TimeoutError:
                raise self._fail() from None

    def _fail(self) -> PublishFailed:
        if self._failure is None:
            self._failure = DeliveryTimeout(
                self.session, len(self._queue), self._delivery_timeout_s
            )
            logger.error("%s", self._failure)
        return self._failure

    async def _send_loop(self) -> None:
        """The watchdog: reconnects, refusals and late acks go through recovery here."""
        nc = self._acks.nc
        while not self._closing:
            self._wake.clear()
            self._check_delivery_bound()
            if isinstance(self._failure, WriterConflict):
                if self._closing_event is not None:
                    await close_after_conflict(
                        self._acks.js,
                        self._failure,
                        self._closing_event,
                        max_msg_size=self._max_msg_size,
                    )
                    self._closing_event = None
                    self._idle.set()
            elif not nc.is_connected:
                await asyncio.sleep(_RETRY_PAUSE_S)
                continue
            elif nc.stats["reconnects"] != self._reconnects:
                self._reconnects = nc.stats["reconnects"]
                await self._recover()
                continue
            elif self._trouble or self._stale():
                await self._recover()
                continue
            elif self._queue and not self._in_flight:
                await self._send_first()
            try:
                await asyncio.wait_for(self._wake.wait(), self._ack_timeout_s)
            except TimeoutError:
                pass

    def _stale(self) -> bool:
        """The event in flight has waited longer than an ack may take."""
        return self._in_flight and time.monotonic() - self._queue[0].first_try > self._ack_timeout_s
