"""The process's one subscription to progress snapshots, shared by every `/v1/progress` client.

It exists while at least one client is connected, and is closed by the
lifespan at shutdown (gateway/state.py). A client attaches before it reads KV;
live snapshots that arrive meanwhile are held (the latest per session,
bounded) and sent afterwards only when newer (`updated_at`) than what KV gave.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from agentcast.codec import stamp_decoder
from agentcast.subjects import PROGRESS_PREFIX
from gateway.feed import SessionMatch
from gateway.frames import sse_event
from gateway.sink import Sink

logger = logging.getLogger(__name__)

PROGRESS_ALL: Final = PROGRESS_PREFIX + ".>"
MAX_HELD: Final = 10_000
"""Sessions whose live snapshot a client may hold while it reads KV; beyond: lagged."""
_PREFIX_LEN: Final = len(PROGRESS_PREFIX) + 1


def progress_message(snapshot: bytes) -> bytes:
    """One snapshot as an SSE message (`event: progress`)."""
    return sse_event(None, "progress", snapshot)


class ProgressClient:
    """One SSE client: held snapshots until its KV pass is done, then written live."""

    __slots__ = ("held", "live", "match", "sink")

    def __init__(self, sink: Sink, match: SessionMatch) -> None:
        self.sink = sink
        self.match = match
        self.held: dict[str, tuple[int, bytes]] = {}
        self.live = False

    def offer(self, session: str, updated_at: int, message: bytes) -> None:
        sink = self.sink
        if sink.reason is not None:
            return
        if self.live:
            self.offer_live(message)
        else:
            self.held[session] = (updated_at, message)
            if len(self.held) > MAX_HELD:
                sink.finish("lagged")

    def offer_live(self, message: bytes) -> None:
        if self.sink.buffered() > self.sink.limit:
            self.sink.finish("lagged")
        elif self.sink.reason is None:
            self.sink.send(message)

    def go_live(self, sent: dict[str, int]) -> None:
        """Write the held snapshots newer than those sent from KV, then write live ones."""
        for session, (updated_at, message) in self.held.items():
            if updated_at > sent.get(session, -1):
                self.offer_live(message)
        self.held.clear()
        self.live = True


class ProgressFeed:
    """The process's one subscription to `agentcast.progress.>`, shared by its clients."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.clients: set[ProgressClient] = set()
        self._snapshot: tuple[ProgressClient, ...] = ()
        self._sub: NatsSubscription | None = None
        self._lock = asyncio.Lock()

    async def attach(self, client: ProgressClient) -> None:
        async with self._lock:
            if self._sub is None:
                self._sub = await self.nc.subscribe(PROGRESS_ALL, cb=self._on_msg)
            self.clients.add(client)
            self._snapshot = tuple(self.clients)

    async def detach(self, client: ProgressClient) -> None:
        async with self._lock:
            self.clients.discard(client)
            self._snapshot = tuple(self.clients)
            if self.clients or self._sub is None:
                return
            sub, self._sub = self._sub, None
            try:
                await sub.unsubscribe()
            except Exception as exc:  # noqa: BLE001 - the connection may be closing
                logger.debug("unsubscribe %s: %r", PROGRESS_ALL, exc)

    async def _on_msg(self, msg: Msg) -> None:
        clients = self._snapshot
        if not clients:
            return
        session = msg.subject[_PREFIX_LEN:]
        try:
            updated_at = stamp_decoder.decode(msg.data).updated_at
        except msgspec.DecodeError:
            logger.warning("skipping a malformed progress snapshot on %s", msg.subject)
            return
        message = progress_message(msg.data)
        for client in clients:
            if client.match(session):
                client.offer(session, updated_at, message)

    async def close(self) -> None:
        """Unsubscribe (at shutdown; clients have been told to end)."""
        async with self._lock:
            self.clients.clear()
            self._snapshot = ()
            sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception as exc:  # noqa: BLE001 - the connection may be closing
                logger.debug("unsubscribe %s: %r", PROGRESS_ALL, exc)
