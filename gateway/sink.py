"""A client connection as a sink: shared frame bytes written straight to its transport.

Live frames never wait: `offer` queues the frame's bytes on the sink and the
hub's Flusher writes each sink's queue to its transport in one `write` once
the batch of NATS messages being dispatched is done (one call_soon per batch,
not per frame), so a client that receives several events from one read of
the NATS socket costs one system call, not several. If the transport already
holds more than `limit` unsent bytes the client has fallen behind and the
sink finishes with reason `lagged`; its handler tells the client its cursor
and closes. Replay, which the gateway can pace, uses `push`, which waits for
the client to drain instead. Either way a client holds at most `limit` bytes
plus one batch in this process (the `client_buffer_bytes` setting), so a
stalled reader never grows memory and never slows the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Final, Literal

from starlette.types import Receive, Send

from gateway.frames import Frame
from gateway.telemetry import Stats

if TYPE_CHECKING:
    from gateway.feed import Subscription

logger = logging.getLogger(__name__)

Kind = Literal["sse", "ws"]
Reason = Literal["lagged", "shutdown", "disconnected", "error"]

_POLL_S: Final = 0.01
_POLL_MAX_S: Final = 0.2
RAW_SEND: Final = "agentcast.raw_send"
"""Scope key of the server's own ASGI `send` (set by the app, see gateway/app.py)."""
STREAM: Final = "agentcast.stream"
"""Scope key of a stream handed off by its route (`hand_off`), run by the app afterwards."""
REPLAY_STALL_S: Final = 30.0
"""A client that drains nothing for this long during replay is dropped as lagged."""


class Flusher:
    """Writes every sink that was offered frames, once per loop iteration (see the module doc)."""

    __slots__ = ("_dirty", "_loop")

    def __init__(self) -> None:
        self._dirty: list[Sink] = []
        self._loop = asyncio.get_running_loop()

    def add(self, sink: Sink) -> None:
        if not self._dirty:
            self._loop.call_soon(self.flush)
        self._dirty.append(sink)

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for sink in dirty:
            try:
                sink.flush()
            except Exception:  # one broken connection must not leave the others unflushed
                logger.exception("write to a %s client failed", sink.kind)
                sink._out = None
                sink.finish("error")


class Sink:
    __slots__ = ("_event", "_out", "_out_bytes", "_sse", "_waiter", "active", "flusher", "kind",
                 "limit", "reason", "stats", "subs", "transport")  # fmt: skip

    def __init__(
        self,
        transport: asyncio.WriteTransport,
        kind: Kind,
        limit: int,
        stats: Stats,
        flusher: Flusher | None = None,
    ) -> None:
        self.kind: Kind = kind
        self.transport = transport
        self.limit = limit
        self.stats = stats
        self.flusher = flusher or Flusher()
        self.subs: list[Subscription] = []
        self.reason: Reason | None = None
        self._sse = kind == "sse"
        self._out: list[bytes] | None = None
        self._out_bytes = 0
        self.active = False
        """Sent events since the hub's last heartbeat pass (which then skips this client)."""
        # Made on demand: an idle connection carries no Event or Future.
        self._waiter: asyncio.Future[None] | None = None
        self._event: asyncio.Event | None = None

    def offer(self, frame: Frame) -> bool:
        """Queue a live frame for this batch's write, or finish as lagged if the client is too far behind."""
        if self.reason is not None:
            return False
        transport = self.transport
        if transport.get_write_buffer_size() + self._out_bytes > self.limit:
            self.finish("disconnected" if transport.is_closing() else "lagged")
            return False
        data = frame.sse if self._sse else frame.ws
        out = self._out
        if out is None:
            self._out = [data]
            self.flusher.add(self)
        else:
            out.append(data)
        self._out_bytes += len(data)
        return True

    def flush(self) -> None:
        """Write the queued frames in one write (the Flusher calls this after a batch)."""
        out = self._out
        if out is None:
            return
        self._out = None
        size, self._out_bytes = self._out_bytes, 0
        if self.transport.is_closing():
            self.finish("disconnected")
            return
        self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        self.active = True
        self.stats.events_out[self.kind] += len(out)
        self.stats.bytes_out[self.kind] += size

    def write(self, data: bytes) -> None:
        """Write a small control frame (heartbeat, reply, notice) unconditionally, after queued frames."""
        if self._out is not None:
            self.flush()
        if not self.transport.is_closing():
            self.transport.write(data)

    async def push(self, data: bytes, events: int) -> bool:
        """Write replayed frames, then wait until the client has room again."""
        if self._out is not None:
            self.flush()
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
        """End the stream (first reason wins); queued frames are written, subscriptions detached."""
        if self.reason is not None:
            return
        if self._out is not None:
            self.flush()  # they count in the cursors the client is told
            if self.reason is not None:
                return
        self.reason = reason
        if reason == "lagged":
            self.stats.lagged[self.kind] += 1
        for sub in self.subs:
            sub.detach()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if self._event is not None:
            self._event.set()

    async def wait(self) -> None:
        """Until the sink is finished, for any reason (one waiter at a time)."""
        if self.reason is None:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter

    @property
    def done(self) -> asyncio.Event:
        """An Event set when the sink is finished (`wait()` is the cheaper way)."""
        if self._event is None:
            self._event = asyncio.Event()
            if self.reason is not None:
                self._event.set()
        return self._event

    def cursors(self) -> dict[str, str | None]:
        """Where each subscription should resume: session (or firehose glob) -> cursor."""
        return {sub.name: sub.resume_cursor() for sub in self.subs}

    def buffered(self) -> int:
        return self.transport.get_write_buffer_size() + self._out_bytes


Stream = Callable[[Receive, Send], Awaitable[None]]


def hand_off(scope: MutableMapping[str, Any], stream: Stream) -> None:
    """Carry a started response on below the framework: `stream(receive, send)` runs once the
    route and every middleware have returned (gateway/app.py), so a connection held for hours
    keeps no request objects, dependency exit stacks or middleware frames alive.
    """
    if RAW_SEND not in scope:
        raise RuntimeError("streams are handed off to the gateway app (gateway/app.py)")
    scope[STREAM] = stream


class Watch(asyncio.Protocol):
    """The connection's own protocol, unchanged, except that losing the peer finishes the sink.

    An SSE client sends nothing after its request, so rather than a task
    awaiting ASGI `receive()` for the disconnect (a task, four coroutines and
    a future per idle connection), `Watch(sink)` wraps the server's protocol to
    hear `connection_lost` itself; every call still reaches the server's
    protocol. `stop()` puts the server's protocol back.
    """

    __slots__ = ("_inner", "_sink")

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._inner: asyncio.Protocol = sink.transport.get_protocol()  # type: ignore[assignment]
        sink.transport.set_protocol(self)
        if sink.transport.is_closing():  # gone before the wrapper was in place
            sink.finish("disconnected")

    def stop(self) -> None:
        if self._sink.transport.get_protocol() is self:
            self._sink.transport.set_protocol(self._inner)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._sink.finish("disconnected")
        self._inner.connection_lost(exc)


def transport_of(scope: MutableMapping[str, Any]) -> asyncio.WriteTransport:
    """The connection's transport, from the server's `send` (uvicorn's protocols hold it)."""
    transport = getattr(getattr(scope.get(RAW_SEND), "__self__", None), "transport", None)
    if transport is None or not hasattr(transport, "get_write_buffer_size"):
        raise RuntimeError("streaming endpoints need uvicorn (httptools or h11, websockets-sansio)")
    result: asyncio.WriteTransport = transport
    return result
