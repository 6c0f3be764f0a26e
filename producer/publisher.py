"""Event -> subject: one session's events to JetStream, in seq order, acks pipelined.

`SessionPublisher.emit()` stamps each draft with the session's next `seq` (no
gaps), an id, a timestamp and the run, then queues it. A sender task publishes
the queue in windows: a window's messages all go out before any ack is awaited,
so a run pays one round trip per window, not per event.

Failure policy, in order of escalation:
- An ack that fails or times out (NATS restarting, JetStream recovering) makes
  the sender re-send, one at a time and in order, everything from the first
  unacknowledged event; `Nats-Msg-Id` makes a re-send of a stored event a
  no-op. Then pipelining resumes.
- While JetStream is unreachable, events wait in a bounded buffer
  (`publish_buffer`); `emit()` blocks when it is full, which holds back the
  agent rather than dropping anything.
- If the oldest undelivered event has waited `delivery_timeout_s`, the
  publisher fails: `emit()` and `drain()` raise DeliveryTimeout so the run is
  stopped loudly. The sender keeps trying, so a late recovery still delivers.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import PubAck

from agentcast.errors import DeliveryTimeout
from agentcast.events import Event, EventData, make_event, type_of
from agentcast.subjects import event_subject
from producer.truncate import fit_event

logger = logging.getLogger(__name__)

SEQ_HEADER = "Agentcast-Seq"
_RETRY_PAUSE_S = 0.2


@dataclass(slots=True)
class Outgoing:
    """An event ready for JetStream: envelope, subject, bytes and headers."""

    event: Event
    subject: str
    payload: bytes
    headers: dict[str, str]
    first_try: float = field(default=0.0)


def stamp(
    data: EventData,
    *,
    session: str,
    seq: int,
    run: int,
    max_msg_size: int,
    parent_tool_use_id: str | None = None,
) -> Outgoing:
    """Wrap event data in its envelope and encode it under the size limit.

    The event id is `<session>.<seq>`: unique, and the same on every re-send,
    which is what makes JetStream's duplicate window drop re-sends.
    """
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
    return Outgoing(event, event_subject(session, type_of(event)), payload, headers)


class SessionPublisher:
    """Publishes one session's events; owns their `seq` counter."""

    def __init__(
        self,
        js: JetStreamContext,
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
        self._js = js
        self._next_seq = next_seq
        self._max_msg_size = max_msg_size
        self._window = window
        self._ack_timeout_s = ack_timeout_s
        self._delivery_timeout_s = delivery_timeout_s
        self._queue: collections.deque[Outgoing] = collections.deque()
        self._buffer = buffer
        self._space_freed = asyncio.Event()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._failure: DeliveryTimeout | None = None
        self.acked = 0
        self.last_ack: PubAck | None = None
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
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)

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
            self._failure = DeliveryTimeout(self.session, len(self._queue), self._delivery_timeout_s)
            logger.error("%s", self._failure)
        return self._failure

    async def _send_loop(self) -> None:
        while not self._closing:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            window = [self._queue[i] for i in range(min(self._window, len(self._queue)))]
            delivered = await self._send_window(window)
            if delivered < len(window):
                delivered += await self._resend_in_order(window[delivered:])
            for _ in range(delivered):
                self._queue.popleft()
            self.acked += delivered
            self._space_freed.set()

    async def _send_window(self, window: list[Outgoing]) -> int:
        """Publish all, then await acks in order; returns how many leading ones are stored."""
        now = time.monotonic()
        futures: list[asyncio.Future[PubAck]] = []
        try:
            for item in window:
                item.first_try = item.first_try or now
                futures.append(
                    await self._js.publish_async(item.subject, item.payload, headers=item.headers)
                )
        except (NatsError, OSError) as exc:
            logger.debug("publish failed for %s: %r", self.session, exc)
        delivered = 0
        for future in futures:
            try:
                self.last_ack = await asyncio.wait_for(future, self._ack_timeout_s)
            except (NatsError, OSError, TimeoutError) as exc:
                logger.debug("ack failed for %s: %r", self.session, exc)
                break
            delivered += 1
        for future in futures[delivered:]:
            future.cancel()
        return delivered

    async def _resend_in_order(self, items: list[Outgoing]) -> int:
        """Stop-and-wait from the first unacknowledged event, so stream order holds."""
        for count, item in enumerate(items):
            while True:
                try:
                    self.last_ack = await self._js.publish(
                        item.subject, item.payload, timeout=self._ack_timeout_s, headers=item.headers
                    )
                    break
                except (NatsError, OSError, TimeoutError) as exc:
                    if time.monotonic() - item.first_try > self._delivery_timeout_s:
                        self._fail()
                    logger.debug("re-send of %s failed: %r", item.event.id, exc)
                    if self._closing:
                        return count
                    await asyncio.sleep(_RETRY_PAUSE_S)
            if count == 0 and self._failure is not None:
                logger.warning("session %s: JetStream reachable again after the failure", self.session)
        return len(items)
