"""JetStream publish acks routed to their publisher, one inbox per connection.

nats-py's `publish_async` makes a Future per message and its callers a timer
per Future; at tens of thousands of events a second that bookkeeping costs
more than the publish. Here every publisher gets a reply prefix under one
wildcard inbox subscription, the reply subject names the event's seq, and the
ack is handed to the publisher's callback as it arrives: no Future, no timer.
The callback is a coroutine so that it can publish the session's next event
right away (a session has one event in flight, see producer/publisher.py):
no task switch between an ack and the next publish.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Final

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from agentcast.codec import json_decoder_of

AckCallback = Callable[[int, int, int], Awaitable[None]]
"""Called with (event seq, stream seq, error) for each ack.

`error` is 0 when the event is stored, JetStream's `err_code` when it was
refused (10071: the session's last event is not the expected one), and
NO_ACK when there was no usable answer (no responders, unreadable).
"""

NO_ACK: Final = -1
_NO_RESPONDERS: Final = "503"
# Acks from many sessions arrive through one subscription: let it queue deep.
_PENDING_MSGS: Final = 1_000_000


class _ApiError(msgspec.Struct):
    err_code: int = NO_ACK


class _PubAck(msgspec.Struct):
    seq: int = 0
    error: _ApiError | None = None


_ack_decoder: Final = json_decoder_of(_PubAck)


class AckRouter:
    """Owns the ack inbox of one NATS connection; publishers register to get theirs."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self._prefix = nc.new_inbox()
        self._routes: dict[int, AckCallback] = {}
        self._ids = itertools.count(1)
        self._sub: Subscription | None = None

    async def start(self) -> AckRouter:
        self._sub = await self.nc.subscribe(
            f"{self._prefix}.*",
            cb=self._on_ack,
            pending_msgs_limit=_PENDING_MSGS,
            pending_bytes_limit=-1,
        )
        return self

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    def register(self, callback: AckCallback) -> tuple[int, str]:
        """A route id and the reply prefix to which the event's seq is appended."""
        route = next(self._ids)
        self._routes[route] = callback
        return route, f"{self._prefix}.{route}-"

    def unregister(self, route: int) -> None:
        self._routes.pop(route, None)

    async def _on_ack(self, msg: Msg) -> None:
        route, _, seq = msg.subject[len(self._prefix) + 1 :].partition("-")
        callback = self._routes.get(int(route))
        if callback is None or not seq.isdigit():
            return
        stream_seq, error = _outcome(msg)
        await callback(int(seq), stream_seq, error)


def _outcome(msg: Msg) -> tuple[int, int]:
    """(stream seq, error) of a publish ack."""
    if msg.headers and msg.headers.get("Status") == _NO_RESPONDERS:
        return 0, NO_ACK
    try:
        ack = _ack_decoder.decode(msg.data)
    except msgspec.DecodeError:
        return 0, NO_ACK
    if ack.error is not None:
        return 0, ack.error.err_code or NO_ACK
    return (ack.seq, 0) if ack.seq > 0 else (0, NO_ACK)
