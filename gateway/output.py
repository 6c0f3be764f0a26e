"""Where a client's bytes go, and how they are framed: the one place SSE and WS framing differ.

`open_output` picks one of four, once per connection:

- fast path (the server's transport, see agentcast/_internals.py): `SseWire`
  writes pre-chunked SSE bytes, `WsWire` pre-framed WebSocket frames, straight
  to the transport, whose write buffer is the client's backlog;
- plain path (`gateway_fastpath` off, or no hand-off): `SseAsgi` and `WsAsgi`
  queue unframed messages that one task per connection sends through ASGI
  `send` (the server frames them); the queue is the client's backlog.

Either way the Sink (gateway/sink.py) sees the same small interface: what
bytes an event or message becomes, a non-blocking `write`, the backlog in
bytes, whether the peer is gone, and a bounded `end`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, MutableMapping
from operator import attrgetter
from typing import Any, Final, Literal, Protocol

from starlette.types import Message, Receive, Send

from agentcast._internals import Watch, http_chunk, let_server_see_loss, server_transport, ws_frame
from gateway.frames import Frame

logger = logging.getLogger(__name__)

Kind = Literal["sse", "ws"]
RAW_SEND: Final = "agentcast.raw_send"
"""Scope key of the server's own ASGI `send`, set by the app only on the fast path."""
CLOSE_GRACE_S: Final = 5.0
"""How long a finished stream may take to flush before its connection is aborted."""


class Watcher(Protocol):
    def stop(self) -> None: ...


class Output(Protocol):
    kind: Kind
    event: Callable[[Frame], bytes]
    """A live frame as this output writes it (bytes shared by every client of its kind)."""

    def batch(self, frames: list[Frame]) -> list[bytes]:
        """Replayed frames, as few writes as the framing allows."""

    def message(self, body: bytes) -> bytes:
        """A control message (SSE message or WS JSON) as this output writes it."""

    transport: asyncio.WriteTransport | None
    """The connection's transport, when frames go straight to it (the fast path: the Sink
    then calls it directly, no Python frame of ours per delivery)."""

    def buffered(self) -> int:
        """Bytes written but not yet taken by the client's socket."""

    def closing(self) -> bool: ...

    def write(self, parts: list[bytes]) -> None:
        """Queue bytes for the client, never waiting."""

    def watch(self, receive: Receive, on_lost: Callable[[], None]) -> Watcher:
        """Call `on_lost` when the peer goes away (for clients that send nothing)."""

    async def end(self, send: Send, last: Message) -> None:
        """Send what is queued, then `last`; aborts the connection after CLOSE_GRACE_S."""


def open_output(kind: Kind, scope: MutableMapping[str, Any], send: Send) -> Output:
    """The output for a new stream: the wire when the app handed the server's send down."""
    raw = scope.get(RAW_SEND)
    if raw is not None:
        transport = server_transport(raw)
        return SseWire(transport) if kind == "sse" else WsWire(transport)
    return SseAsgi(send) if kind == "sse" else WsAsgi(send)


class _Wire:
    """Bytes straight to the connection's transport (the fast path)."""

    __slots__ = ("transport",)

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self.transport: asyncio.WriteTransport | None = transport

    @property
    def _transport(self) -> asyncio.WriteTransport:
        assert self.transport is not None
        return self.transport

    def write(self, parts: list[bytes]) -> None:
        self._transport.write(parts[0] if len(parts) == 1 else b"".join(parts))

    def buffered(self) -> int:
        return self._transport.get_write_buffer_size()

    def closing(self) -> bool:
        return self._transport.is_closing()

    def watch(self, receive: Receive, on_lost: Callable[[], None]) -> Watcher:
        return Watch(self._transport, on_lost)

    async def end(self, send: Send, last: Message) -> None:
        try:
            await asyncio.wait_for(send(last), CLOSE_GRACE_S)
        except (TimeoutError, RuntimeError, OSError):
            self._transport.abort()
            await let_server_see_loss()


class SseWire(_Wire):
    __slots__ = ()
    kind: Kind = "sse"
    event: Callable[[Frame], bytes] = attrgetter("sse")

    def batch(self, frames: list[Frame]) -> list[bytes]:
        # Each frame's own chunk, framed once per Frame: a replay storm shares its batches'
        # Frames (gateway/readcache.py), so thousands of replays frame each event once.
        return [b"".join(f.sse for f in frames)]

    def message(self, body: bytes) -> bytes:
        return http_chunk(body)


class WsWire(_Wire):
    __slots__ = ()
    kind: Kind = "ws"
    event: Callable[[Frame], bytes] = attrgetter("ws")

    def batch(self, frames: list[Frame]) -> list[bytes]:
        return [b"".join(f.ws for f in frames)]

    def message(self, body: bytes) -> bytes:
        return ws_frame(body)


class _Asgi:
    """Messages queued for one task that sends them through ASGI `send` (the plain path)."""

    transport: asyncio.WriteTransport | None = None

    def __init__(self, send: Send) -> None:
        self._send = send
        self._queue: list[bytes] = []
        self._size = 0
        self._closed = False
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task = asyncio.get_running_loop().create_task(self._pump())

    def write(self, parts: list[bytes]) -> None:
        if self._closed:
            return
        self._queue.extend(parts)
        self._size += sum(map(len, parts))
        self._idle.clear()
        self._wake.set()

    def buffered(self) -> int:
        return self._size

    def closing(self) -> bool:
        return self._closed

    def _deliver(self, parts: list[bytes]) -> list[Message]:
        raise NotImplementedError

    async def _pump(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    parts, self._queue = self._queue, []
                    for message in self._deliver(parts):
                        await self._send(message)
                    self._size -= sum(map(len, parts))
                self._idle.set()
        except (OSError, RuntimeError) as exc:  # the peer is gone; the sink hears it as closing
            logger.debug("ASGI send failed: %r", exc)
            self._closed = True
            self._idle.set()

    def watch(self, receive: Receive, on_lost: Callable[[], None]) -> Watcher:
        async def until_disconnect() -> None:
            while (await receive())["type"] not in ("http.disconnect", "websocket.disconnect"):
                pass
            self._closed = True
            on_lost()

        return _TaskWatcher(asyncio.get_running_loop().create_task(until_disconnect()))

    async def end(self, send: Send, last: Message) -> None:
        try:
            async with asyncio.timeout(CLOSE_GRACE_S):
                await self._idle.wait()
                if not self._closed:
                    await send(last)
        except (TimeoutError, RuntimeError, OSError) as exc:
            logger.debug("closing a stream: %r", exc)
        finally:
            self._closed = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class _TaskWatcher:
    __slots__ = ("_task",)

    def __init__(self, task: asyncio.Task[None]) -> None:
        self._task = task

    def stop(self) -> None:
        self._task.cancel()


class SseAsgi(_Asgi):
    kind: Kind = "sse"
    event: Callable[[Frame], bytes] = attrgetter("sse_message")

    def batch(self, frames: list[Frame]) -> list[bytes]:
        return [b"".join(f.sse_message for f in frames)]

    def message(self, body: bytes) -> bytes:
        return body

    def _deliver(self, parts: list[bytes]) -> list[Message]:
        return [{"type": "http.response.body", "body": b"".join(parts), "more_body": True}]


class WsAsgi(_Asgi):
    kind: Kind = "ws"
    event: Callable[[Frame], bytes] = attrgetter("ws_message")

    def batch(self, frames: list[Frame]) -> list[bytes]:
        return [f.ws_message for f in frames]

    def message(self, body: bytes) -> bytes:
        return body

    def _deliver(self, parts: list[bytes]) -> list[Message]:
        return [{"type": "websocket.send", "text": part.decode()} for part in parts]
