"""Recovery of a session's publisher: re-send from the head the server has, or stop.

After a refusal, a lost ack or a reconnect, the publisher (producer/publisher.py)
reads the session's last stored event and compares it with the events it
still keeps: what the server lost after its head is sent again, one at a
time and in order, each expecting the stream sequence of the one before as
the server now has it; a head this publisher did not write means another
writer got in (WriterConflict). A mixin of SessionPublisher: it shares the
publisher's queue and state, declared below.

A single nats-server acknowledges a write before its file store flushes it
(a few ms later), so a crash (kill -9) can lose events it already acked.
The publisher therefore keeps acked events for `RETAIN_S`, sends nothing
while disconnected (nats-py would otherwise buffer new events and flush them
first on reconnect, ahead of any re-send), and after every reconnect
recovers as above: what the server lost is after its last event, so it is
sent again. (nats-server 2.15 checks the expected sequence before the
duplicate window, so a re-send of an event the server still has would be
refused, not dropped as a duplicate: hence reading the head first.)
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time

from nats.errors import Error as NatsError

from agentcast.errors import PublishFailed, WriterConflict
from producer.acks import AckRouter
from producer.head import LastEvent, expect_after, last_event, stored_prefix
from producer.stamp import Outgoing

logger = logging.getLogger(__name__)

_RETRY_PAUSE_S = 0.2
# Longer than nats-server's flush delay by orders of magnitude; short enough
# that 1,000 sessions at 20 events/s keep only ~20 events each.
RETAIN_S = 1.0


class HeadRecovery:
    """Stop-and-wait re-sending from the session's stored head."""

    session: str
    _acks: AckRouter
    _queue: collections.deque[Outgoing]
    _retained: collections.deque[Outgoing]
    _base: tuple[int, int]
    _last_stream_seq: int
    _next_seq: int
    _in_flight: bool
    _trouble: bool
    _closing: bool
    _closing_event: Outgoing | None
    _failure: PublishFailed | None
    _ack_timeout_s: float
    _idle: asyncio.Event
    _space_freed: asyncio.Event

    def _retire(self, stream_seq: int) -> None:
        raise NotImplementedError

    _delivery_timeout_s: float

    def _fail(self) -> PublishFailed:
        raise NotImplementedError

    def _check_delivery_bound(self) -> None:
        """Fail the publisher (DeliveryTimeout) once the oldest event waited too long."""
        if self._queue and time.monotonic() - self._queue[0].queued_at > self._delivery_timeout_s:
            self._fail()

    async def _send_first(self) -> None:
        raise NotImplementedError

    async def _recover(self) -> None:
        """Stop-and-wait from the session's head as the server has it, in seq order.

        Kept events (acked in the last RETAIN_S, and every unacknowledged one)
        after the stored head are sent again, each expecting the stream
        sequence of the one before; anything else at the head is another writer.
        """
        self._trouble = True
        self._in_flight = False
        while not self._closing and self._failure_allows_recovery():
            resend = await self._after_head()
            if resend is None:
                return
            logger.info("session %s: re-sending %d events in order", self.session, len(resend))
            if await self._resend(resend):
                break
            await asyncio.sleep(_RETRY_PAUSE_S)
        self._trouble = False
        if self._queue:
            await self._send_first()
        else:
            self._idle.set()
        if self._failure is not None and not self._queue:
            logger.warning("session %s: JetStream reachable again after the failure", self.session)

    def _failure_allows_recovery(self) -> bool:
        return not isinstance(self._failure, WriterConflict)

    async def _after_head(self) -> list[Outgoing] | None:
        """The kept events the server does not have; None on a conflict or when closing."""
        while not self._closing:
            self._check_delivery_bound()
            if not self._acks.nc.is_connected:
                await asyncio.sleep(_RETRY_PAUSE_S)
                continue
            try:
                head = await last_event(self._acks.js, self.session)
            except (NatsError, OSError, TimeoutError) as exc:
                logger.debug("session %s: reading the head failed: %r", self.session, exc)
                await asyncio.sleep(_RETRY_PAUSE_S)
                continue
            kept = [*self._retained, *self._queue]
            found = stored_prefix(head, [(i.event.seq, i.payload) for i in kept], self._base)
            if found is None:
                self._conflict(head, self._queue[0].event.seq if self._queue else self._next_seq)
                return None
            stored, lost = found
            if lost:
                logger.error(
                    "session %s: the server lost events %d..%d, older than the %.1fs kept "
                    "for re-sending: they are gone",
                    self.session,
                    head.seq + 1,
                    self._base[0],
                    RETAIN_S,
                )
                self._base = (head.seq, head.stream_seq)
            for item in kept[:stored]:
                if self._queue and self._queue[0] is item:  # stored, its ack lost
                    self._retire(item.stream_seq)
            if stored:
                kept[stored - 1].stream_seq = self._last_stream_seq = head.stream_seq
            return kept[stored:]
        return None

    async def _resend(self, resend: list[Outgoing]) -> bool:
        """Publish in order, each after the previous; False when the head must be read again."""
        previous = self._stream_seq_before(resend[0]) if resend else 0
        for item in resend:
            if self._closing:
                return True
            try:
                ack = await self._acks.js.publish(
                    item.subject,
                    item.payload,
                    timeout=self._ack_timeout_s,
                    headers=expect_after(item.headers, self.session, previous),
                )
            except (NatsError, OSError, TimeoutError) as exc:
                # Refused or unanswered: it may be stored, or someone else may be
                # at the head; reading the head again tells which.
                logger.debug("re-send of %s failed: %r", item.event.id, exc)
                return False
            previous = item.stream_seq = ack.seq
            if self._queue and self._queue[0] is item:
                self._retire(ack.seq)
            self._last_stream_seq = ack.seq
        return True

    def _stream_seq_before(self, item: Outgoing) -> int:
        before = [i for i in (*self._retained, *self._queue) if i.event.seq < item.event.seq]
        return before[-1].stream_seq if before else self._base[1]

    def _conflict(self, head: LastEvent, seq: int) -> None:
        self._failure = WriterConflict(
            self.session, seq, self._last_stream_seq, head.seq, head.stream_seq
        )
        logger.error("%s", self._failure)
        lost = len(self._queue)
        if lost:
            logger.error(
                "session %s: %d events refused by JetStream are dropped", self.session, lost
            )
        self._queue.clear()
        self._in_flight = False
        self._trouble = False
        self._space_freed.set()
        if self._closing_event is None:
            self._idle.set()
