"""Event -> subject: one session's events to JetStream, in seq order, acks pipelined.

`SessionPublisher.emit()` stamps each draft with the session's next `seq` (no
gaps), an id, a timestamp and the run, then queues it. A sender task keeps up
to `window` events in flight: it publishes without waiting, and acks come back
through the connection's AckRouter (producer/acks.py), each one retiring the
event it names. A run pays round trips only when the window is full.

Failure policy, in order of escalation:
- An ack that reports an error, or that has not come within `ack_timeout_s`
  (NATS restarting, JetStream recovering), switches the sender to recovery:
  it re-sends, one at a time and in order, everything not yet acknowledged;
  `Nats-Msg-Id` makes a re-send of an already stored event a no-op. Then
  pipelining resumes.
- While JetStream is unreachable, events wait in a bounded buffer
  (`publish_buffer`); `emit()` blocks when it is full, which holds back the
  agent rather than dropping anything.
- If the oldest undelivered event has waited `delivery_timeout_s`, the
  publisher fails: `emit()` and `drain()` raise DeliveryTimeout so the run is
  stopped loudly. The sender keeps trying, so a late recovery still delivers.

A single nats-server acknowledges a write before its file store flushes it
(a few ms later), so a crash (kill -9) can lose events it already acked.
The publisher therefore keeps acked events for `_RETAIN_S`, sends nothing
while disconnected (nats-py would otherwise buffer new events and flush them
first on reconnect, ahead of any re-send), and after every reconnect re-sends
the retained and unacknowledged events in order: the duplicate window drops
what the server still has and stores again what it lost.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field

from nats.errors import Error as NatsError

from agentcast.errors import DeliveryTimeout
from agentcast.events import Event, EventData, make_event, type_of
from agentcast.subjects import event_subject
from producer.acks import AckRouter
from producer.truncate import fit_event

logger = logging.getLogger(__name__)

SEQ_HEADER = "Agentcast-Seq"
_RETRY_PAUSE_S = 0.2
# Longer than nats-server's flush delay by orders of magnitude; short enough
# that 1,000 sessions at 20 events/s keep only ~20 events each.
_RETAIN_S = 1.0


@dataclass(slots=True)
class Outgoing:
    """An event ready for JetStream: envelope, subject, bytes and headers."""

    event: Event
    subject: str
    payload: bytes
    headers: dict[str, str]
    queued_at: float = field(default_factory=time.monotonic)
    first_try: float = 0.0
    acked_at: float = 0.0


def stamp(
    data: EventData,
    *,
    session: str,
    seq: int,
    run: int,
    max_msg_size: int,
    parent_tool_use_id: str | None = None,
    subject_prefix: str = "",
) -> Outgoing:
    """Wrap event data in its envelope and encode it under the size limit.

    `subject_prefix` is `event_subject(session, "")`, passed by callers that
    stamp many events of one session so the id is validated once.

    The event id is `<session>.<seq>`: unique, and the same on every re-send,
    which is what makes JetStream's duplicate window drop re-sends.
    """
    subject_prefix = subject_prefix or event_subject(session, "")
    event = make_event(
        data,
        id=f"{session}.{seq}",
        session=session,
        run=run,
        seq=seq,
        ts=time.time_ns(),
        parent_tool_use_id=parent_tool_use_id,
    )
    event, payload = fit_event(event, max_msg_size)
    headers = {"Nats-Msg-Id": event.id, SEQ_HEADER: str(seq)}
    return Outgoing(event, f"{subject_prefix}{type_of(event)}", payload, headers)


class SessionPublisher:
    """Publishes one session's events; owns their `seq` counter."""

    def __init__(
        self,
        acks: AckRouter,
        session: str,
        *,
        next_seq: int,
        max_msg_size: int,
        buffer: int = 10_000,
        window: int = 256,
        ack_timeout_s: float = 5.0,
        delivery_timeout_s: float = 60.0,
    ) -> None:
        self.session = session
        self._acks = acks
        self._next_seq = next_seq
        self._max_msg_size = max_msg_size
        self._window = window
        self._ack_timeout_s = ack_timeout_s
        self._delivery_timeout_s = delivery_timeout_s
        # Every event not yet acknowledged, in seq order; the first `_in_flight` are sent.
        self._queue: collections.deque[Outgoing] = collections.deque()
        self._in_flight = 0
        self._acked_ahead: set[int] = set()
        # Acked in the last _RETAIN_S, oldest first: re-sent after a reconnect.
        self._retained: collections.deque[Outgoing] = collections.deque()
        self._reconnects = acks.nc.stats["reconnects"]
        self._trouble = False
        self._buffer = buffer
        self._space_freed = asyncio.Event()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._failure: DeliveryTimeout | None = None
        self.acked = 0
        self._subject_prefix = event_subject(session, "")
        self._route, self._reply_prefix = acks.register(self._on_ack)
        self._sender = asyncio.create_task(self._send_loop(), name=f"publisher:{session}")

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def emit(
        self,
        data: EventData,
        *,
        run: int,
        parent_tool_use_id: str | None = None,
        after_failure: bool = False,
    ) -> Event:
        """Stamp and queue one event; returns it (possibly truncated).

        Raises DeliveryTimeout once the publisher has failed, unless
        `after_failure` (the run's closing event must still be tried).
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
        self._queue.append(item)
        self._idle.clear()
        self._wake.set()
        return item.event

    async def drain(self, timeout_s: float | None = None) -> None:
        """Wait until every queued event is acknowledged by JetStream."""
        bound = self._delivery_timeout_s if timeout_s is None else timeout_s
        try:
            await asyncio.wait_for(self._idle.wait(), bound)
        except TimeoutError:
            raise DeliveryTimeout(self.session, len(self._queue), bound) from None
        self._raise_if_failed()

    async def close(self, timeout_s: float | None = None) -> None:
        """Drain, then stop the sender. Raises DeliveryTimeout if events remain."""
        try:
            await self.drain(timeout_s)
        finally:
            self._closing = True
            self._acks.unregister(self._route)
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)

    # -- acks ----------------------------------------------------------------------

    def _on_ack(self, seq: int, stored: bool) -> None:
        if self._trouble:
            return  # recovery re-sends and confirms everything itself
        if not stored:
            self._trouble = True
            self._wake.set()
            return
        if not self._queue or seq < self._queue[0].event.seq:
            return  # a late ack of an event already retired
        self._acked_ahead.add(seq)
        retired = False
        while self._queue and self._queue[0].event.seq in self._acked_ahead:
            self._acked_ahead.discard(self._queue[0].event.seq)
            self._retire()
            retired = True
        if retired:
            self._wake.set()

    def _retire(self) -> None:
        """The oldest in-flight event is stored: keep it a moment in case the server loses it."""
        item = self._queue.popleft()
        self._in_flight -= 1
        self.acked += 1
        now = item.acked_at = time.monotonic()
        self._retained.append(item)
        while self._retained and now - self._retained[0].acked_at > _RETAIN_S:
            self._retained.popleft()
        self._space_freed.set()

    # -- internals -----------------------------------------------------------------

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

    def _fail(self) -> DeliveryTimeout:
        if self._failure is None:
            self._failure = DeliveryTimeout(
                self.session, len(self._queue), self._delivery_timeout_s
            )
            logger.error("%s", self._failure)
        return self._failure

    async def _send_loop(self) -> None:
        nc = self._acks.nc
        while not self._closing:
            self._check_delivery_bound()
            if not nc.is_connected:
                await asyncio.sleep(_RETRY_PAUSE_S)
                continue
            if nc.stats["reconnects"] != self._reconnects:
                self._reconnects = nc.stats["reconnects"]
                await self._recover(retained=True)
                continue
            if self._trouble or self._stale():
                await self._recover()
                continue
            try:
                while self._in_flight < min(self._window, len(self._queue)) and nc.is_connected:
                    item = self._queue[self._in_flight]
                    item.first_try = item.first_try or time.monotonic()
                    # Counted before the attempt: if it raises, the event may or
                    # may not have left, and recovery re-sends it either way.
                    self._in_flight += 1
                    await nc.publish(
                        item.subject,
                        item.payload,
                        reply=f"{self._reply_prefix}{item.event.seq}",
                        headers=item.headers,
                    )
            except (NatsError, OSError) as exc:
                logger.debug("publish failed for %s: %r", self.session, exc)
                self._trouble = True
                continue
            if not self._queue:
                self._idle.set()
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self._ack_timeout_s)
            except TimeoutError:
                pass

    def _check_delivery_bound(self) -> None:
        if self._queue and time.monotonic() - self._queue[0].queued_at > self._delivery_timeout_s:
            self._fail()

    def _stale(self) -> bool:
        """The oldest event in flight has waited longer than an ack may take."""
        return (
            self._in_flight > 0
            and time.monotonic() - self._queue[0].first_try > self._ack_timeout_s
        )

    async def _recover(self, *, retained: bool = False) -> None:
        """Stop-and-wait over what may be missing, in seq order, so stream order holds.

        That is every unacknowledged sent event, and after a reconnect also
        the recently acked ones (the server may have lost them in a crash).
        """
        self._trouble = True
        replay = list(self._retained) if retained else []
        logger.info(
            "session %s: re-sending %d events in order", self.session, len(replay) + self._in_flight
        )
        for item in replay:
            if not await self._publish_until_stored(item):
                return
        while self._in_flight > 0 and self._queue and not self._closing:
            if not await self._publish_until_stored(self._queue[0]):
                return
            self._retire()
        self._in_flight = 0
        self._acked_ahead.clear()
        self._trouble = False
        if self._failure is not None and not self._queue:
            logger.warning("session %s: JetStream reachable again after the failure", self.session)

    async def _publish_until_stored(self, item: Outgoing) -> bool:
        """Request-reply publish, retried until stored; False if the publisher is closing."""
        while not self._closing:
            self._check_delivery_bound()
            if not self._acks.nc.is_connected:
                await asyncio.sleep(_RETRY_PAUSE_S)
                continue
            try:
                await self._acks.js.publish(
                    item.subject, item.payload, timeout=self._ack_timeout_s, headers=item.headers
                )
                return True
            except (NatsError, OSError, TimeoutError) as exc:
                logger.debug("re-send of %s failed: %r", item.event.id, exc)
                await asyncio.sleep(_RETRY_PAUSE_S)
        return False
