"""One durable JetStream pull consumer, read with raw pull requests and acknowledged with AckAll.

Why not `js.pull_subscribe().fetch()`: nats-py's fetch costs ~20 µs per
message and a per-message ack as much again; a raw pull request answered
into one inbox subscription, with one AckAll per fsynced batch, costs a few.

AckAll acknowledges everything up to the acked message, so two rules keep it
exact:
- Acknowledge only a position below which every delivered message is done
  (the caller's business: it never acks past a held-back event).
- Never let a pending, undelivered message sit below a later ack. After a
  crash the consumer still has the old batch pending while new messages
  would be delivered first; so on start (and whenever deliveries may have
  been lost: a reconnect, a gap in the delivery sequence) the consumer is
  recreated from its ack floor, and JetStream delivers from there in stream
  order. Repeats are recognised by the caller (per-session seq).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final, NamedTuple

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy
from nats.js.errors import NotFoundError

from agentcast._internals import pending_queue

logger = logging.getLogger(__name__)

# A pull whose answer has not ended by then (lost in a reconnect) is given up.
_ANSWER_S: Final = 2.0
_PENDING_MSGS: Final = 1_000_000
_encode = msgspec.json.encode


def take_queued(queue: asyncio.Queue[Msg]) -> Msg:
    """A message queued for a callback-less subscription, marked done (nats-py's drain() waits for it)."""
    msg = queue.get_nowait()
    queue.task_done()
    return msg


class Delivery(NamedTuple):
    """One message as the consumers need it."""

    subject: str
    data: bytes
    reply: str
    stream_seq: int
    """Position in the consumer's stream (what acks refer to)."""
    cursor: int
    """Position in AGENTCAST_EVENTS (the same, unless the stream sources it)."""


class Puller:
    """Reads a durable consumer in order; `take()` returns what arrived, `ack()` acks up to a message."""

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        *,
        stream: str,
        durable: str,
        filter_subject: str,
        batch: int,
        ack_wait_s: float,
        max_ack_pending: int,
        start_seq: int = 0,
        sourced: bool = False,
    ) -> None:
        self._nc = nc
        self._js = js
        self.stream = stream
        self.durable = durable
        self._filter = filter_subject
        self._batch = max(1, batch)
        self._ack_wait_s = ack_wait_s
        self._max_ack_pending = max_ack_pending
        self._start_seq = start_seq
        self._sourced = sourced
        self._sub: Subscription | None = None
        self._inbox = ""
        self._buf: list[Delivery] = []
        self._open = False
        """A pull request is being answered."""
        self._more = True
        """The last pull left messages behind: pull again at once."""
        self._last_cseq = 0
        self._delivered = 0
        """The consumer's last delivery when this process took it over."""
        self._reconnects = 0
        self.needs_resync = False
        self.pending = -1
        """Messages of the stream not yet delivered to this consumer (its lag); -1 before start."""

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        self._reconnects = self._nc.stats.get("reconnects", 0)
        await self._ensure_consumer(force_reset=False)
        await self._subscribe()

    async def stop(self) -> None:
        """Stop reading; the server drops our pull requests with the inbox's interest."""
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()

    async def resync(self) -> None:
        """Recreate the consumer from its ack floor and read on from there, in order."""
        logger.warning("Consumer %s resyncing from its ack floor", self.durable)
        await self.stop()
        self._buf = []
        self.needs_resync = False
        self._reconnects = self._nc.stats.get("reconnects", 0)
        await self._ensure_consumer(force_reset=True)
        await self._subscribe()

    async def _ensure_consumer(self, *, force_reset: bool) -> None:
        try:
            info: ConsumerInfo | None = await self._js.consumer_info(self.stream, self.durable)
        except NotFoundError:
            info = None
        floor = 0
        if info is not None:
            floor = info.ack_floor.stream_seq if info.ack_floor and info.ack_floor.stream_seq else 0
            cfg = info.config
            unchanged = cfg.filter_subject == self._filter and cfg.ack_policy == AckPolicy.ALL
            if unchanged and not force_reset and not info.num_ack_pending:
                self.pending = info.num_pending or 0
                # A delivery after a jump went to someone else's pull request
                # (a process gone or paused): caught as a gap from the first one.
                self._delivered = (info.delivered.consumer_seq or 0) if info.delivered else 0
                return
            logger.info(
                "Consumer %s restarts after its ack floor (stream seq %d, %s pending)",
                self.durable,
                floor,
                info.num_ack_pending,
            )
            await self._js.delete_consumer(self.stream, self.durable)
        start = floor + 1 if floor else (self._start_seq or None)
        created = await self._js.add_consumer(self.stream, self._config(start))
        self.pending = created.num_pending or 0
        self._delivered = 0

    def _config(self, start_seq: int | None) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            description="agentcast consumer (acks follow durable writes)",
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start_seq else DeliverPolicy.ALL,
            opt_start_seq=start_seq,
            ack_policy=AckPolicy.ALL,
            ack_wait=self._ack_wait_s,
            max_ack_pending=self._max_ack_pending,
            filter_subject=self._filter,
            max_deliver=-1,
        )

    async def _subscribe(self) -> None:
        self._inbox = self._nc.new_inbox()
        self._last_cseq = self._delivered
        self._more = True
        # No callback: nats-py queues the messages and take() reads the queue
        # when it pulls. A callback subscription wakes a task per message.
        self._sub = await self._nc.subscribe(
            self._inbox, pending_msgs_limit=_PENDING_MSGS, pending_bytes_limit=0
        )

    # -- reading -------------------------------------------------------------------

    async def take(self, timeout: float) -> list[Delivery]:
        """Wait `timeout` (not when more is known to wait), then pull what the stream holds now.

        Why not keep a pull request open and take messages as they come:
        live traffic then brings a message or two per socket read and per
        wakeup, each costing more than the message. Pulled when the consumer
        is about to commit anyway, the server sends them in one burst: a few
        reads of many messages, as when catching up on a backlog.
        """
        if self._nc.stats.get("reconnects", 0) != self._reconnects:
            # Messages in flight when the connection dropped are delivered
            # from JetStream's point of view: read again from the floor.
            self.needs_resync = True
        if timeout > 0 and not self._more and not self.needs_resync:
            await asyncio.sleep(timeout)
        if self._sub is not None and not self.needs_resync:
            await self._pull(self._sub)
        out, self._buf = self._buf, []
        return out

    async def _pull(self, sub: Subscription) -> None:
        """One request for up to a batch, answered at once (no_wait): read until its end."""
        self._open = True
        body = _encode({"batch": self._batch, "no_wait": True})
        await self._nc.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.durable}", body, reply=self._inbox
        )
        queue = pending_queue(sub)
        deadline = time.monotonic() + _ANSWER_S
        while self._open and not self.needs_resync and len(self._buf) < self._batch:
            left = deadline - time.monotonic()
            if left <= 0:
                break  # the answer was lost (a reconnect): the next take() asks again
            try:
                msg = await asyncio.wait_for(queue.get(), left)
            except TimeoutError:
                break
            queue.task_done()
            self._accept(msg)
            while not queue.empty() and len(self._buf) < self._batch:
                self._accept(take_queued(queue))
        # A full batch: more may wait behind it, pull again at once. Less than a
        # batch was all there was (or all max_ack_pending allows): wait.
        self._more = len(self._buf) >= self._batch

    def _accept(self, msg: Msg) -> None:
        reply = msg.reply
        if not reply:
            # A status: 100 heartbeat, 404/408 request over, 409 request refused or consumer gone.
            headers = msg.headers or {}
            status = headers.get("Status", "")
            if status == "100":
                return
            if status == "409" and "Deleted" in headers.get("Description", ""):
                self.needs_resync = True
            self._open = False  # the request is over (no more messages for it now)
            return
        tokens = reply.split(".")
        # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>, or the v2
        # form with <domain>.<account hash> after ACK and a random token at the end.
        if len(tokens) == 9:
            sseq, cseq, pending = tokens[5], tokens[6], tokens[8]
        else:
            sseq, cseq, pending = tokens[7], tokens[8], tokens[10]
        dseq = int(cseq)
        if dseq != self._last_cseq + 1 and not self.needs_resync:
            logger.warning("Consumer %s: delivery %d after %d", self.durable, dseq, self._last_cseq)
            self.needs_resync = True
        if self.needs_resync:
            return
        self._last_cseq = dseq
        self.pending = int(pending)
        at = int(sseq)
        cursor = at
        if self._sourced:
            # "AGENTCAST_EVENTS <origin seq> <filter> <transform> <subject> <id>"
            source = (msg.headers or {}).get("Nats-Stream-Source", "")
            origin = source.split(" ", 2)[1:2]
            cursor = int(origin[0]) if origin and origin[0].isdigit() else 0
        self._buf.append(Delivery(msg.subject, msg.data, reply, at, cursor))

    # -- acknowledging -------------------------------------------------------------

    async def ack(self, reply: str) -> None:
        """Acknowledge the message with this reply subject and everything before it."""
        await self._nc.publish(reply, b"+ACK")
