"""KV buckets the consumers own (beside the contract's `agentcast_sessions`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Final

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from agentcast._internals import pending_queue
from agentcast.bus import key_value
from agentcast.subjects import EVENTS_STREAM
from consumers.pull import take_queued

_PENDING_ACKS: Final = 1_000_000
_NO_RESPONDERS: Final = "503"


async def bucket(js: JetStreamContext, name: str, description: str, ttl_s: float) -> KeyValue:
    """The bucket `name`, created (history 1, file storage, keys expiring after `ttl_s`) if missing.

    A new bucket gets as many replicas as the events stream (which every role
    creates or checks first, from `settings.replicas`): what indexes the
    events is kept as safely as they are.
    """
    try:
        replicas = (await js.stream_info(EVENTS_STREAM)).config.num_replicas or 1
    except NotFoundError:
        replicas = 1
    return await key_value(js, name, description, replicas, ttl_s)


class BatchPut:
    """Many KV puts at once, their acks gathered on one inbox: no Future or task per put.

    `KeyValue.put` awaits each put through nats-py's request machinery (a
    Future, a timer, a JSON decode), which costs more than the put itself
    when the metrics consumer stores a hundred keys four times a second.
    Here each put is a plain publish to the bucket's subject with a reply
    under one wildcard inbox, and the acks are counted as they come.
    """

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._prefix = ""
        self._sub: Subscription | None = None

    async def put_many(
        self, bucket: str, items: Iterable[tuple[str, bytes]], timeout_s: float
    ) -> int:
        """Store every (key, value) in `bucket`, returning once JetStream acked them all.

        Raises nats.errors.TimeoutError when they are not all acked within `timeout_s`.
        """
        if self._sub is None:
            self._prefix = self._nc.new_inbox()
            # No callback: drained below, all acks that came at each wakeup.
            self._sub = await self._nc.subscribe(
                f"{self._prefix}.*", pending_msgs_limit=_PENDING_ACKS, pending_bytes_limit=0
            )
        queue = pending_queue(self._sub)
        while not queue.empty():  # late acks of a put_many that timed out
            take_queued(queue)
        sent = 0
        for key, value in items:
            await self._nc.publish(f"$KV.{bucket}.{key}", value, reply=f"{self._prefix}.{sent}")
            sent += 1
        acked = 0
        deadline = time.monotonic() + timeout_s
        while acked < sent:
            left = deadline - time.monotonic()
            if left <= 0:
                raise nats.errors.TimeoutError
            msg = await asyncio.wait_for(queue.get(), left)
            queue.task_done()
            acked += _checked(msg, bucket)
            while not queue.empty():
                acked += _checked(take_queued(queue), bucket)
        return sent

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()


def _checked(msg: Msg, bucket: str) -> int:
    """1 for a stored put; a refusal (or no JetStream answering) raises."""
    if (msg.headers or {}).get("Status") == _NO_RESPONDERS:
        # Seen when a node of a cluster dies: its stream has no leader yet (the role pauses).
        raise nats.errors.Error(f"put into {bucket} refused: no responders (status 503)")
    if b'"error"' in msg.data:
        raise nats.errors.Error(f"put into {bucket} refused: {msg.data[:200]!r}")
    return 1


_LATE_ENTRY_S: Final = 2.0


async def current_values(kv: KeyValue, timeout_s: float = 30.0) -> list[tuple[str, bytes]]:
    """Every key's current value, read through a watcher, none missed.

    nats-py's watcher can signal "no more initial values" before it has handed
    over values the server already sent (it checks its consumer's pending
    count before its callback has run), so a restart could load nothing and
    then hold every session back as a gap. The bucket's message count says how
    many values to expect; after an early marker, late values are still read
    until that count or a quiet `_LATE_ENTRY_S`.
    """
    expected = (await kv.status()).values
    found: list[tuple[str, bytes]] = []
    watcher = await kv.watchall(ignore_deletes=True)
    deadline = time.monotonic() + timeout_s
    marker_seen = False
    try:
        while len(found) < expected or not marker_seen:
            left = deadline - time.monotonic()
            wait = min(left, _LATE_ENTRY_S) if marker_seen else left
            if wait <= 0:
                break
            try:
                entry = await watcher.updates(timeout=wait)  # type: ignore[no-untyped-call]
            except nats.errors.TimeoutError:
                break
            if entry is None:
                marker_seen = True
            elif entry.value:
                found.append((entry.key, entry.value))
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    return found
