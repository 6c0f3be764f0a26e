"""Durable Streams `live=sse`: replay then live through the hub, as Durable Streams events.

The stream is the gateway's own (gateway/feed.py: replay in batches, then
live with no gap or duplicate, gateway/sink.py bounds); only the framing
differs. Every `event: data` is followed by one `event: control` with the
offset after it, in the same write. A live message is its own pair, up to
date; a replayed batch's pair says `upToDate` when it was the last one
(see `Framing`). The response ends after
`durable_sse_max_s`, on lag or at shutdown; the client reconnects with its
last `streamNextOffset`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, MutableMapping
from functools import partial
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from agentcast._internals import http_chunk, server_transport
from gateway.durable.source import Source
from gateway.durable.wire import Mode, sse_control, sse_data
from gateway.feed import Subscription
from gateway.frames import Frame
from gateway.hub import Hub
from gateway.output import RAW_SEND, Output, SseAsgi, SseWire
from gateway.sink import Sink, hand_off
from gateway.slots import Slot
from gateway.state import GatewayState

logger = logging.getLogger(__name__)


class Framing:
    """Frames as Durable Streams SSE events, for one response (its mode and cursor).

    Called in the order the bytes are written (the sink writes queued frames
    before anything else). A replayed batch is held until the next write, so
    that it goes out together with its control event, which can then say
    `upToDate` when replay found nothing after it (one batch held, at most
    `client_buffer_bytes`). A stream's closing message (`end_type`) ends with
    a `streamClosed` control, and the response with it (`on_close`).
    """

    __slots__ = ("closed", "cursor", "end_type", "held", "held_closed", "held_seq",
                 "live_sent", "mode", "on_close")  # fmt: skip

    def __init__(self, mode: Mode, cursor: str, end_type: str | None = None) -> None:
        self.mode = mode
        self.cursor = cursor
        self.end_type = end_type
        self.held = b""
        self.held_seq: int | None = None
        self.held_closed = False
        self.live_sent = False
        self.closed = False
        self.on_close: Callable[[], object] | None = None

    def _data(self, frames: list[Frame]) -> bytes:
        # A closing message without data is empty; no stored JSON value or append ever is.
        payloads = [f.payload for f in frames if f.payload]
        return sse_data(self.mode, payloads) if payloads else b""

    def _control(self, seq: int, *, up_to_date: bool, closed: bool = False) -> bytes:
        return sse_control(seq, self.cursor, up_to_date=up_to_date, closed=closed)

    def _ends(self, frame: Frame) -> bool:
        return self.end_type is not None and frame.type == self.end_type

    def _release(self, *, up_to_date: bool) -> bytes:
        if self.held_seq is None:
            return b""
        closed = self.held_closed
        out = self.held + self._control(self.held_seq, up_to_date=up_to_date, closed=closed)
        self.held, self.held_seq = b"", None
        return out

    def live(self, frame: Frame) -> bytes:
        self.live_sent = True
        closing = self._ends(frame)
        out = self._release(up_to_date=False) + self._data([frame])
        out += self._control(frame.seq, up_to_date=True, closed=closing)
        if closing:
            self.closed = True
            if self.on_close is not None:
                self.on_close()
        return out

    def replay(self, frames: list[Frame]) -> bytes:
        out = self._release(up_to_date=False)
        self.held = self._data(frames)
        self.held_seq = frames[-1].seq
        self.held_closed = self._ends(frames[-1])  # nothing is stored after it
        self.closed = self.closed or self.held_closed
        return out

    def caught_up(self, position: int) -> bytes | None:
        """What to write once replay has reached the tail; None if a live message said so."""
        if self.held_seq is not None:
            return self._release(up_to_date=True)
        if self.live_sent:
            return None
        return self._control(position, up_to_date=True, closed=self.closed)

    def ending(self) -> bytes | None:
        """A batch still held when the response ends."""
        return self._release(up_to_date=False) or None


class DsWire(SseWire):
    """Straight to the transport (the fast path), each write one HTTP chunk."""

    def __init__(self, transport: asyncio.WriteTransport, framing: Framing) -> None:
        super().__init__(transport)
        self._framing = framing
        self.event = lambda frame: http_chunk(framing.live(frame))

    def batch(self, frames: list[Frame]) -> list[bytes]:
        out = self._framing.replay(frames)
        return [http_chunk(out)] if out else []  # an empty chunk would end the body


class DsAsgi(SseAsgi):
    """Through ASGI `send` (the plain path)."""

    def __init__(self, send: Send, framing: Framing) -> None:
        super().__init__(send)
        self._framing = framing
        self.event = framing.live

    def batch(self, frames: list[Frame]) -> list[bytes]:
        out = self._framing.replay(frames)
        return [out] if out else []


def open_ds_output(scope: MutableMapping[str, Any], send: Send, framing: Framing) -> Output:
    raw = scope.get(RAW_SEND)
    if raw is not None:
        return DsWire(server_transport(raw), framing)
    return DsAsgi(send, framing)


class DsSseResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self, gw: GatewayState, jti: str, source: Source, position: int, cursor: str,
        headers: list[tuple[bytes, bytes]], closed_at: int | None = None,
    ) -> None:  # fmt: skip
        super().__init__(status_code=200, media_type=self.media_type)
        self.jti = jti
        self.closed_at = closed_at
        """The offset of the closing message, if the stream is closed."""
        self.gw = gw
        self.source = source
        self.position = position
        self.cursor = cursor
        self.start_headers = [
            (b"content-type", b"text/event-stream"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            *headers,
        ]
        if source.mode is Mode.BINARY:
            self.start_headers.append((b"stream-sse-data-encoding", b"base64"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gw, source = self.gw, self.source
        slot = await gw.stream_slot(self.jti, scope, receive, send)
        if slot is None:
            return
        try:
            framing = Framing(source.mode, self.cursor, source.end_type)
            framing.closed = self.closed_at is not None and self.position >= self.closed_at
            sink = Sink(
                open_ds_output(scope, send, framing), gw.settings.client_buffer_bytes, gw.stats,
                source.hub.flusher,
            )  # fmt: skip
            slot.stream = sink
            loop = asyncio.get_running_loop()
            # After the write that the closing frame is part of (the Flusher's call_soon is first).
            framing.on_close = partial(loop.call_soon, sink.finish, "disconnected")
            await send(
                {"type": "http.response.start", "status": 200, "headers": self.start_headers}
            )
            stream = partial(
                _stream, source.hub, sink, source, self.position, framing,
                gw.settings.durable_sse_max_s, slot,
            )  # fmt: skip
            await hand_off(scope, receive, send, stream)
        except BaseException:
            slot.release()
            raise


async def _stream(
    hub: Hub, sink: Sink, source: Source, position: int, framing: Framing, max_s: float,
    slot: Slot, receive: Receive, send: Send,
) -> None:  # fmt: skip
    try:
        await _serve(hub, sink, source, position, framing, max_s, receive, send)
    finally:
        slot.release()


async def _serve(
    hub: Hub, sink: Sink, source: Source, position: int, framing: Framing, max_s: float,
    receive: Receive, send: Send,
) -> None:  # fmt: skip
    async with hub.connect(sink) as client:
        if sink.reason is None:
            sub = Subscription(
                source.key, sink, source.subject, after=position, types=None, sessions=None
            )
            await client.subscribe(source.key, sub)
            watch = sink.output.watch(receive, sink.lost)
            try:
                try:
                    await client.catch_up(sub)
                except Exception:
                    logger.exception("Durable Streams replay failed for %s", source.tag)
                    sink.finish("error")
                if sink.reason is None and not sub.catching_up:
                    # Live now. Frames played from `pending` are queued and written first
                    # (sink.flush), so this offset covers everything written before it.
                    sink.flush()
                    control = framing.caught_up(sub.position)
                    if control is not None:
                        sink.send(control)
                if not framing.closed:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(max_s):
                            await sink.wait()
            finally:
                watch.stop()
        sink.flush()
        if (control := framing.ending()) is not None:
            sink.send(control)
        if not sink.output.closing():
            last = {"type": "http.response.body", "body": b"", "more_body": False}
            await sink.output.end(send, last)
