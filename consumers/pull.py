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

logger = logging.getLogger(__name__)

_EXPIRES_S: Final = 5.0
# A request whose end we never heard of (lost in a reconnect) is replaced after this.
_REQUEST_GRACE_S: Final = 2.0
# How often take() looks for a full batch while it waits (bulk: returns as soon as one is in).
_POLL_S: Final = 0.02
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
        self._requested = 0
        """Messages asked for and not yet received: kept between one and two batches."""
        self._deadline = 0.0
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
        self._requested = 0
        self._last_cseq = self._delivered
        # No callback: nats-py queues the messages and take() drains the queue
        # at its own pace. A callback subscription wakes a task per message,
        # which under live traffic (a few messages per pull) costs more than
        # the message. Bounded by max_ack_pending (JetStream stops delivering).
        self._sub = await self._nc.subscribe(
            self._inbox, pending_msgs_limit=_PENDING_MSGS, pending_bytes_limit=0
        )
        await self._request()

    # -- reading -------------------------------------------------------------------

    async def take(self, timeout: float) -> list[Delivery]:
        """What arrives within `timeout`: sooner only once a whole batch is in.

        Why wait the whole time when a few messages are in: live traffic
        brings a few events per pull, and a consumer that woke for each would
        spend more on waking (a task switch, a loop pass, a commit check) than
        on the events. It waits until its next commit is due anyway.
        """
        if self._nc.stats.get("reconnects", 0) != self._reconnects:
            # Messages in flight when the connection dropped are delivered
            # from JetStream's point of view: read again from the floor.
            self.needs_resync = True
        deadline = time.monotonic() + timeout
        self._drain()
        while len(self._buf) < self._batch and not self.needs_resync:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await self._request()
            await asyncio.sleep(min(left, _POLL_S))
            self._drain()
        out, self._buf = self._buf, []
        await self._request()
        return out

    def _drain(self) -> None:
        """Take in what nats-py has queued for the inbox."""
        sub = self._sub
        if sub is None:
            return
        queue = sub._pending_queue  # nats-py's queue of a callback-less subscription
        while not queue.empty():
            self._accept(take_queued(queue))

    async def _request(self) -> None:
        """Ask for another batch while less than one is on its way (two in flight: no idle gap)."""
        if self._sub is None or self.needs_resync or len(self._buf) >= self._batch:
            return
        now = time.monotonic()
        if self._requested >= self._batch and now < self._deadline:
            return
        if now >= self._deadline:
            self._requested = 0  # what was asked for earlier expired unseen (a reconnect)
        self._requested += self._batch
        self._deadline = now + _EXPIRES_S + _REQUEST_GRACE_S
        body = _encode({"batch": self._batch, "expires": int(_EXPIRES_S * 1e9)})
        await self._nc.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.durable}", body, reply=self._inbox
        )

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
            self._requested = 0  # the next _request() asks again
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
        self._requested -= 1

    # -- acknowledging -------------------------------------------------------------

    async def ack(self, reply: str) -> None:
        """Acknowledge the message with this reply subject and everything before it."""
        await self._nc.publish(reply, b"+ACK")
