"""The live fast path: the hub's NATS messages taken straight from nats-py's protocol parser.

nats-py turns every message into a `Msg` with a parsed header dict, queues it
on its subscription and wakes that subscription's task to await a callback:
some 15 µs per event before the hub sees it, paid by every gateway process for
every event of every followed session. The hub needs three numbers and the
payload, so a `Tap` sits in front of the client's message handler
(`Client._process_msg`, which the parser awaits for each message): a message
for one of the hub's subscriptions goes to its route synchronously, with the
sequence numbers cut out of the raw header block; anything else goes on to
nats-py unchanged. Subscribing, unsubscribing and resubscribing after a
reconnect stay nats-py's. With the fast path off, or if the client has no
such hook (another nats-py), the Tap stays off and the hub's subscription
callbacks do the same work the slow way. The hook and the sid are nats-py's
private parts: both are reached through agentcast/_internals.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from nats.aio.client import Client
from nats.aio.subscription import Subscription

from agentcast._internals import MessageHook, install_message_hook, subscription_id

logger = logging.getLogger(__name__)

Route = Callable[[bytes, bytes, int, int], None]
"""Called with (subject, payload, stream sequence, previous sequence on the subject or 0)."""

_SEQ: Final = b"\r\nNats-Sequence:"
_LAST: Final = b"\r\nNats-Last-Sequence:"


def positions(headers: bytes) -> tuple[int, int]:
    """`Nats-Sequence` and `Nats-Last-Sequence` (0 when absent) from a raw NATS header block."""
    start = headers.index(_SEQ) + len(_SEQ)
    seq = int(headers[start : headers.index(b"\r", start)])
    start = headers.find(_LAST)
    if start < 0:
        return seq, 0
    start += len(_LAST)
    return seq, int(headers[start : headers.index(b"\r", start)])


class Tap:
    """Routes the messages of registered subscriptions before nats-py builds `Msg` objects."""

    def __init__(self, nc: Client, *, enabled: bool = True) -> None:
        self._routes: dict[int, Route] = {}
        self.installed = enabled and install_message_hook(nc, self._wrap)

    def _wrap(self, original: MessageHook) -> MessageHook:
        routes = self._routes

        async def process_msg(
            sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
        ) -> None:
            route = routes.get(sid)
            if route is None or not headers:
                await original(sid, subject, reply, data, headers)
                return
            try:
                seq, last = positions(headers)
            except ValueError:
                await original(sid, subject, reply, data, headers)
                return
            try:
                route(subject, data, seq, last)
            except (
                Exception
            ):  # inside nats-py's parser, an escaping error would drop the connection
                logger.exception("live message on %r failed", subject)

        return process_msg

    def add(self, sub: Subscription, route: Route) -> bool:
        """Route `sub`'s messages to `route`; False when the Tap is off (use the callback)."""
        if self.installed:
            self._routes[subscription_id(sub)] = route
        return self.installed

    def remove(self, sub: Subscription) -> None:
        self._routes.pop(subscription_id(sub), None)
