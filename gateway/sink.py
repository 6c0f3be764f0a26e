"""A client connection as a sink: shared frame bytes written straight to its transport.

Live frames never wait: `offer` writes to the transport at once, unless the
transport already holds more than `limit` unsent bytes. Then the client has
fallen behind and the sink finishes with reason `lagged`; its handler tells
the client its cursor and closes. Replay, which the gateway can pace, uses
`push`, which waits for the client to drain instead. Either way a client holds
at most `limit` bytes plus one write in this process (the `client_buffer_bytes`
setting), so a stalled reader never grows memory and never slows the others.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, Final, Literal

from gateway.frames import Frame
from gateway.telemetry import Stats

if TYPE_CHECKING:
    from gateway.feed import Subscription

Kind = Literal["sse", "ws"]
Reason = Literal["lagged", "shutdown", "disconnected", "error"]

_POLL_S: Final = 0.01
_POLL_MAX_S: Final = 0.2
RAW_SEND: Final = "agentcast.raw_send"
"""Scope key of the server's own ASGI `send` (set by the app, see gateway/app.py)."""
REPLAY_STALL_S: Final = 30.0
"""A client that drains nothing for this long during replay is dropped as lagged."""


class Sink:
    __slots__ = ("_sse", "done", "kind", "limit", "reason", "stats", "subs", "transport")

    def __init__(
        self, transport: asyncio.WriteTransport, kind: Kind, limit: int, stats: Stats
    ) -> None:
        self.kind: Kind = kind
        self.transport = transport
        self.limit = limit
        self.stats = stats
        self.subs: list[Subscription] = []
        self.done = asyncio.Event()
        self.reason: Reason | None = None
        self._sse = kind == "sse"

    def offer(self, frame: Frame) -> bool:
        """Write a live frame now, or finish as lagged if the client is too far behind."""
        if self.reason is not None:
            return False
        transport = self.transport
        if transport.get_write_buffer_size() > self.limit:
            self.finish("disconnected" if transport.is_closing() else "lagged")
            return False
        if transport.is_closing():
            self.finish("disconnected")
            return False
        data = frame.sse if self._sse else frame.ws
        transport.write(data)
        stats = self.stats
        stats.events_out[self.kind] += 1
        stats.bytes_out[self.kind] += len(data)
        return True

    def write(self, data: bytes) -> None:
        """Write a small control frame (heartbeat, reply, notice) unconditionally."""
        if not self.transport.is_closing():
            self.transport.write(data)

    async def push(self, data: bytes, events: int) -> bool:
        """Write replayed frames, then wait until the client has room again."""
        if self.reason is not None or self.transport.is_closing():
            return False
        self.transport.write(data)
        self.stats.events_out[self.kind] += events
        self.stats.bytes_out[self.kind] += len(data)
        low = self.limit // 2
        delay = _POLL_S
        last_size = self.transport.get_write_buffer_size()
        last_progress = time.monotonic()
        while last_size > low:
            if self.reason is not None or self.transport.is_closing():
                return False
            await asyncio.sleep(delay)
            size = self.transport.get_write_buffer_size()
            now = time.monotonic()
            if size < last_size:
                last_progress = now
            elif now - last_progress > REPLAY_STALL_S:
                self.finish("lagged")
                return False
            last_size = size
            delay = min(delay * 2, _POLL_MAX_S)
        return self.reason is None

    def finish(self, reason: Reason) -> None:
        """End the stream (first reason wins); every subscription is detached at once."""
        if self.reason is not None:
            return
        self.reason = reason
        if reason == "lagged":
            self.stats.lagged[self.kind] += 1
        for sub in self.subs:
            sub.detach()
        self.done.set()

    def cursors(self) -> dict[str, str | None]:
        """Where each subscription should resume: session (or firehose glob) -> cursor."""
        return {sub.name: sub.resume_cursor() for sub in self.subs}

    def buffered(self) -> int:
        return self.transport.get_write_buffer_size()


def transport_of(scope: MutableMapping[str, Any]) -> asyncio.WriteTransport:
    """The connection's transport, from the server's `send` (uvicorn's protocols hold it)."""
    transport = getattr(getattr(scope.get(RAW_SEND), "__self__", None), "transport", None)
    if transport is None or not hasattr(transport, "get_write_buffer_size"):
        raise RuntimeError("streaming endpoints need uvicorn (httptools or h11, websockets-sansio)")
    result: asyncio.WriteTransport = transport
    return result
