"""The per-process fan-out hub: one upstream NATS subscription per topic, shared by its clients.

A topic is a session (`agentcast.live.<session>.>`) or the firehose
(`agentcast.live.>`); it is subscribed when its first client arrives and
unsubscribed when the last leaves. JetStream republishes every stored event
there with its stream sequence, so a live message is framed without decoding
its JSON, and the same Frame (the same bytes) goes to every client. Messages
arrive through the Tap (gateway/upstream.py) and are dispatched synchronously:
no Msg object, task or lock per event.

A hub serves the topics of one JetStream stream (`Subjects`): the events
stream's sessions, or (a second hub) the Durable Streams app streams of
gateway/durable/.

Routes connect a sink with `async with hub.connect(sink) as client:` and
subscribe through that `Client`; nothing else changes the hub's sets.

Core NATS may drop messages during a reconnect or when this process is a slow
consumer. A topic dispatches in stream order, so a live message whose
`Nats-Last-Sequence` (the previous sequence on its subject) is above the last
one dispatched proves a loss; that, a reconnect or a slow-consumer error makes
the topic refill from JetStream before dispatching anything newer: a refill
task reads JetStream while live messages are held, then plays the held ones
through the same sequence check. Its floor is set by the first subscription
that goes live after replaying.

Pending limits, whichever path delivers: with the Tap off, nats-py queues a
topic's messages for its callback task, bounded by `pending_msgs` /
`pending_bytes`, and past them drops messages and reports a SlowConsumerError.
With the Tap on, messages are dispatched as they are parsed, so nothing queues
except what a refill holds, which the same two limits bound. Both overflows go
to `Topic.slow_consumer`: counted, logged, and refilled from JetStream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.errors import SlowConsumerError

from agentcast.memory import compact_set
from agentcast.sessions import validate_session_id
from agentcast.settings import Settings
from agentcast.subjects import EVENT_PREFIX, LIVE_PREFIX
from gateway.admission import Admission
from gateway.feed import Subscription
from gateway.frames import HEARTBEAT, Frame
from gateway.replay import DirectReader
from gateway.sink import Flusher, Sink
from gateway.telemetry import Stats
from gateway.upstream import Tap

logger = logging.getLogger(__name__)

PENDING_MSGS: Final = 65_536
PENDING_BYTES: Final = 64 * 1024 * 1024
_REFILL_RETRY_S: Final = 0.5
_HEARTBEAT_SLICE: Final = 500
HEARTBEAT_PASSES: Final = 4
"""Heartbeat passes per interval: an idle client gets one 3/4 to 1 interval after its last frame."""
FIREHOSE: Final = "*"


@dataclass(frozen=True, slots=True)
class Subjects:
    """Where a hub's topics are: `<live>.<key>.>` republished, `<stored>.<key>.>` stored."""

    live: str
    stored: str


EVENT_SUBJECTS: Final = Subjects(LIVE_PREFIX, EVENT_PREFIX)


class Topic:
    def __init__(self, hub: Hub, key: str) -> None:
        self.hub = hub
        self.key = key
        subjects = hub.subjects
        if key == FIREHOSE:
            self.live_subject, self.replay_subject = f"{subjects.live}.>", f"{subjects.stored}.>"
        else:
            validate_session_id(key)  # never a wildcard or a subject token of its own
            self.live_subject = f"{subjects.live}.{key}.>"
            self.replay_subject = f"{subjects.stored}.{key}.>"
        self.subs: set[Subscription] = set()
        self._snapshot: tuple[Subscription, ...] = ()
        self.last_seq = 0
        self.mark = -1
        """The reader's tick once subscribed: reads sent after it, every event stored after
        their answer comes here live (gateway/readcache.py)."""
        self._held: list[Frame] | None = None
        """Live frames that came while a refill runs (None: no refill running)."""
        self._held_bytes = 0
        self._held_dropped = False
        self._nats: NatsSubscription | None = None
        self.ready = asyncio.get_running_loop().create_future()
        self.closed = False

    async def open(self) -> None:
        try:
            self._nats = await self.hub.nc.subscribe(
                self.live_subject,
                cb=self._on_msg,
                pending_msgs_limit=self.hub.pending_msgs,
                pending_bytes_limit=self.hub.pending_bytes,
            )
            self.hub.tap.add(self._nats, self.on_message)
            self.mark = self.hub.reader.mark()
        except BaseException as exc:
            self.ready.set_exception(exc)
            self.ready.exception()  # retrieved here: waiters re-raise it themselves
            raise
        self.ready.set_result(None)

    async def close(self) -> None:
        if self._nats is not None:
            self.hub.tap.remove(self._nats)
            try:
                await self._nats.unsubscribe()
            except Exception as exc:  # noqa: BLE001 - the connection may be closed at shutdown
                logger.debug("unsubscribe %s: %r", self.live_subject, exc)

    def add(self, sub: Subscription) -> None:
        self.subs.add(sub)
        self._snapshot = tuple(self.subs)

    def remove(self, sub: Subscription) -> None:
        self.subs.discard(sub)
        self._snapshot = tuple(self.subs)
        if not self.subs:
            self.hub.release(self)

    def owns(self, sub: object) -> bool:
        return self._nats is not None and self._nats is sub

    async def _on_msg(self, msg: Msg) -> None:
        """The subscription callback: only used when the Tap is off."""
        headers = msg.headers or {}
        seq, last = int(headers["Nats-Sequence"]), int(headers.get("Nats-Last-Sequence", 0))
        self.on_message(msg.subject.encode(), msg.data, seq, last)

    def on_message(self, subject: bytes, data: bytes, seq: int, last: int) -> None:
        """One live message, in stream order; dispatched now unless a refill must come first."""
        self.hub.stats.events_in += 1
        self.hub.reader.observe(seq)
        held = self._held
        if held is None and seq <= self.last_seq:
            return
        session, _, event_type = subject[self.hub.live_prefix_len :].decode().partition(".")
        frame = Frame(seq, session, event_type, data)
        if held is not None:
            self._hold(held, frame)
        # The previous event on this subject came after everything dispatched so far:
        # core NATS lost it (and maybe others); JetStream has them all.
        elif self.last_seq and last > self.last_seq:
            self._held, self._held_bytes = [frame], len(data)
            self.hub.spawn(self._refill())
        else:
            self._dispatch(frame)

    def _hold(self, held: list[Frame], frame: Frame) -> None:
        self._held_bytes += len(frame.payload)
        if len(held) >= self.hub.pending_msgs or self._held_bytes > self.hub.pending_bytes:
            held.clear()  # the refill reads these from JetStream instead
            self._held_bytes = len(frame.payload)
            if not self._held_dropped:
                self._held_dropped = True
                self.slow_consumer()
        held.append(frame)

    def slow_consumer(self) -> None:
        """More came than the pending limits allow (nats-py's queue or the refill's hold):
        messages were dropped, so the topic refills from JetStream."""
        self.hub.stats.slow_consumers += 1
        logger.warning("slow consumer on %s: refilling from JetStream", self.live_subject)
        self.resync()

    def floor(self, position: int) -> None:
        """A subscription went live at `position`: the topic answers for what follows."""
        if self.last_seq == 0:
            self.last_seq = position

    def _dispatch(self, frame: Frame) -> None:
        self.last_seq = frame.seq
        for sub in self._snapshot:
            sub.on_live(frame)

    def resync(self) -> None:
        """Dispatch whatever JetStream holds past `last_seq` (after a reconnect or a drop)."""
        if self._held is None and self.last_seq:
            self._held, self._held_bytes = [], 0
            self.hub.spawn(self._refill())

    async def _refill(self) -> None:
        """Read JetStream to its end, then play the held live frames; retried until it succeeds."""
        self.hub.stats.gap_refills += 1
        try:
            while not self.closed:
                try:
                    await self._read_to_end()
                except Exception as exc:  # noqa: BLE001 - JetStream unreachable: try again
                    logger.warning("refill of %s failed, retrying: %r", self.live_subject, exc)
                    await asyncio.sleep(_REFILL_RETRY_S)
                    continue
                # No await from the end of the read to here: held frames follow it exactly.
                held, self._held, self._held_bytes = self._held or [], [], 0
                if self._held_dropped:
                    self._held_dropped = False
                    continue
                for frame in held:
                    if frame.seq > self.last_seq:
                        self._dispatch(frame)
                return
        finally:
            self._held = None

    async def _read_to_end(self) -> None:
        reader, batch = self.hub.reader, self.hub.replay_batch
        since = reader.mark()  # live frames are held from before this on
        while True:
            found = await reader.batch(
                self.last_seq + 1, self.replay_subject, batch, 1 << 20, since=since
            )
            for frame in found.frames:
                if frame.seq > self.last_seq:
                    self._dispatch(frame)
            if found.pending == 0 or not found.frames:
                return


class Hub:
    """Topics by key, the set of open sinks, heartbeats and shutdown."""

    def __init__(
        self,
        nc: Client,
        reader: DirectReader,
        stats: Stats,
        *,
        replay_batch: int,
        heartbeat_s: float,
        fastpath: bool = True,
        pending_msgs: int = PENDING_MSGS,
        pending_bytes: int = PENDING_BYTES,
        subjects: Subjects = EVENT_SUBJECTS,
        admission: Admission | None = None,
    ) -> None:
        self.nc = nc
        self.subjects = subjects
        self.live_prefix_len = len(subjects.live) + 1
        self.reader = reader
        self.stats = stats
        self.admission = admission or Admission.of(Settings(), stats)
        self.replay_batch = replay_batch
        self.heartbeat_s = heartbeat_s
        self.pending_msgs = pending_msgs
        self.pending_bytes = pending_bytes
        self.topics: dict[str, Topic] = {}
        self.sinks: set[Sink] = set()
        self.tap = Tap(nc, enabled=fastpath)
        self.flusher = Flusher()
        self.closing = False
        self._tasks: set[asyncio.Task[Any]] = set()

    def connect(self, sink: Sink) -> Subscriber:
        """`async with hub.connect(sink) as client:` a client stream for the duration of the
        block: counted, heart-beaten, told to end at shutdown; its subscriptions leave their
        topics when it ends."""
        return Subscriber(self, sink)

    async def attach(self, key: str, sub: Subscription) -> Topic:
        """Add `sub` to its topic, subscribing upstream if it is the first."""
        topic = self.topics.get(key)
        if topic is None:
            topic = Topic(self, key)
            self.topics[key] = topic
            topic.add(sub)
            try:
                await topic.open()
            except BaseException:
                topic.closed = True
                if self.topics.get(key) is topic:
                    del self.topics[key]
                raise
        else:
            topic.add(sub)
            await topic.ready
        return topic

    def release(self, topic: Topic) -> None:
        if topic.closed or topic.subs:
            return
        topic.closed = True
        if self.topics.get(topic.key) is topic:
            del self.topics[topic.key]
        self.spawn(topic.close())

    def buffered(self) -> int:
        """Bytes held in client transports; at most len(sinks) * (client_buffer_bytes + one write)."""
        return sum(sink.buffered() for sink in self.sinks)

    def subscriptions(self) -> int:
        return sum(len(t.subs) for t in self.topics.values())

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def on_reconnect(self) -> None:
        for topic in list(self.topics.values()):
            topic.resync()

    async def on_error(self, exc: Exception) -> None:
        if isinstance(exc, SlowConsumerError):
            for topic in list(self.topics.values()):
                if topic.owns(exc.sub):
                    topic.slow_consumer()

    async def heartbeats(self) -> None:
        """Run `beat()` HEARTBEAT_PASSES times every `heartbeat_s`, on a fixed schedule (a slow
        pass does not push the next ones back), until cancelled."""
        loop = asyncio.get_running_loop()
        period = self.heartbeat_s / HEARTBEAT_PASSES
        due = loop.time()
        while True:
            due = max(due + period, loop.time())
            await asyncio.sleep(due - loop.time())
            await self.beat()

    async def beat(self) -> None:
        """Write a comment to every SSE client sent nothing for most of an interval (proxies,
        dead peers), so that one comes at most `heartbeat_s` after the last frame; drop those
        still too far behind as lagged.
        """
        for i, sink in enumerate(list(self.sinks)):
            if i % _HEARTBEAT_SLICE == _HEARTBEAT_SLICE - 1:
                await asyncio.sleep(0)  # 10,000 writes in one go would stall every stream
            if sink.kind != "sse" or sink.reason is not None:
                continue
            if sink.buffered() > sink.limit:
                sink.finish("lagged")
            elif sink.heartbeat_due(HEARTBEAT_PASSES):
                sink.send(HEARTBEAT)

    def shutdown(self) -> None:
        """Finish every stream: SSE clients get a retry hint, WebSockets close 1012."""
        self.closing = True
        for sink in list(self.sinks):
            sink.finish("shutdown")

    async def close(self) -> None:
        self.shutdown()
        self.admission.close()
        for task in list(self._tasks):
            task.cancel()
        for topic in list(self.topics.values()):
            await topic.close()
        self.topics.clear()


class Subscriber:
    """One connected stream and its subscriptions (`Hub.connect`; a context manager)."""

    __slots__ = ("_hub", "_topics", "sink")

    def __init__(self, hub: Hub, sink: Sink) -> None:
        self._hub = hub
        self.sink = sink
        self._topics: dict[Subscription, Topic | None] = {}

    async def __aenter__(self) -> Self:
        hub, sink = self._hub, self.sink
        hub.stats.connections[sink.kind] += 1
        hub.stats.connections_total[sink.kind] += 1
        hub.sinks.add(sink)
        if hub.closing:
            sink.finish("shutdown")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        hub, sink = self._hub, self.sink
        hub.sinks.discard(sink)
        compact_set(hub.sinks)
        hub.stats.connections[sink.kind] -= 1
        sink.finish("disconnected")
        for sub in list(self._topics):
            self.unsubscribe(sub)

    async def subscribe(self, key: str, sub: Subscription) -> None:
        """Attach `sub` to topic `key` (live frames are held in `sub` until it catches up)."""
        self._topics[sub] = None
        topic = await self._hub.attach(key, sub)
        if sub in self._topics and self.sink.reason is None:
            self._topics[sub] = topic
            # Reads sent from now on see every event that will not come live (readcache.py).
            reader = self._hub.reader
            sub.since = reader.mark()
            if not reader.replicated:  # replicas lag: there each replay reads after its sync
                sub.live_mark, sub.live_seen = topic.mark, topic.last_seq
        else:
            topic.remove(sub)  # unsubscribed or finished while the topic opened

    async def catch_up(self, sub: Subscription) -> None:
        """Replay `sub` up to the end of the stream, then let it go live."""
        hub = self._hub
        if await sub.catch_up(hub.reader, hub.replay_batch, hub.admission):
            # No await since the replay's end: the topic's floor is exactly `sub`'s position.
            topic = self._topics.get(sub)
            if topic is not None:
                topic.floor(sub.position)

    def unsubscribe(self, sub: Subscription) -> None:
        sub.detached = True
        topic = self._topics.pop(sub, None)
        if topic is not None:
            topic.remove(sub)

    def cursors(self) -> dict[str, str | None]:
        """Where each subscription should resume: session (or firehose glob) -> cursor."""
        return {sub.name: sub.resume_cursor() for sub in self._topics}
