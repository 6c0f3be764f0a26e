"""The Durable Streams read path, for sessions and application streams alike.

- catch-up `GET ?offset=O`: one replay batch after O (gateway/replay.py
  batched direct gets), `Stream-Up-To-Date` when it reaches the tail, an
  ETag naming the range read (the same range always holds the same bytes);
- `live=long-poll`: the same read; when it finds nothing, a hub subscription
  (gateway/hub.py) wakes the request at the next stored message and the read
  runs again, or the request ends with a 204 after `durable_long_poll_s`.
  The subscription is made before the read, so a message stored between the
  two is seen by one or the other (the hand-over argument of gateway/feed.py);
- `live=sse`: gateway/durable/sse.py;
- `HEAD`: the tail offset, nothing cached.
An offset older than retention is the `cursor_expired` 410 of every agentcast
resume; one this stream never issued is `invalid_cursor` (400).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Send

from gateway.durable.offsets import NOW, START, format_offset, parse_offset, stream_cursor
from gateway.durable.source import Source
from gateway.durable.sse import DsSseResponse
from gateway.durable.wire import body, etag
from gateway.errors import ApiError
from gateway.feed import Subscription
from gateway.frames import Frame
from gateway.output import Kind, Watcher
from gateway.readcache import Batch
from gateway.replay import stored_seq
from gateway.sink import Sink
from gateway.slots import Slot
from gateway.state import GatewayState

SECURITY_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "cross-origin",
}
_IMMUTABLE: Final = "private, max-age=60, stale-while-revalidate=300"
"""A read that stopped short of the tail: that range never changes."""
_AT_TAIL: Final = "private, no-cache"
"""A read that reached the tail: the next one may hold more, so revalidate (ETag)."""


async def read(gw: GatewayState, source: Source, request: Request, jti: str) -> Response:
    """GET or HEAD of `source`, by the Durable Streams read protocol.

    A live read (long-poll, SSE) holds one of its token's stream slots
    (gateway/slots.py) while it is open, as every other stream does.
    """
    query = request.query_params
    offset = parse_offset(query.getlist("offset"))
    if request.method == "HEAD":
        end, closed = await _last(source)
        return _reply(200, source, b"", end, cache="no-store", closed=closed)
    live = query.get("live")
    if live is not None and "offset" not in query:
        raise ApiError(400, "invalid_cursor", f"live={live} needs an offset")
    position = await _resolve(source, offset)
    if live is None:
        if offset == NOW:
            closed = (await _last(source))[1]
            empty = body(source.mode, [])
            return _reply(200, source, empty, position, up=True, cache="no-store", closed=closed)
        return await _catch_up(gw, source, position, request.headers.get("if-none-match"))
    cursor = stream_cursor(query.get("cursor"))
    if live == "long-poll":
        slot = await gw.slots.acquire(jti)
        try:
            return await _long_poll(gw, source, position, cursor, slot)
        finally:
            slot.release()
    if live == "sse":
        end, closed = await _last(source)
        headers = _raw(SECURITY_HEADERS)
        return DsSseResponse(gw, jti, source, position, cursor, headers, end if closed else None)
    raise ApiError(400, "invalid_live", "live must be long-poll or sse")


async def tail(source: Source) -> int:
    """The offset of the stream's last stored message (0 when it has none)."""
    return (await _last(source))[0]


async def _last(source: Source) -> tuple[int, bool]:
    """The tail offset, and whether the stream is closed there."""
    last = await source.hub.reader.last(source.subject)
    if last is None:
        return START, False
    return stored_seq(last), source.closes(last)


async def _closed_after(source: Source, found: Batch) -> bool:
    """Whether a read that returned `found` reached the stream's closing message."""
    if found.frames:
        return source.closed_by(found.frames[-1])
    return found.pending == 0 and source.end_type is not None and (await _last(source))[1]


def _payloads(found: Batch) -> list[bytes]:
    # A closing message without data is empty; no stored JSON value or append ever is.
    return [f.payload for f in found.frames if f.payload]


async def _resolve(source: Source, offset: int) -> int:
    """The stream sequence to read after: the tail for `now`, a checked offset otherwise."""
    if offset == NOW:
        return await tail(source)
    if offset > START:
        await source.hub.reader.check_resume(offset, source.subject, source.key.__eq__)
    return offset


async def _batch(gw: GatewayState, source: Source, position: int) -> Batch:
    return await source.hub.reader.batch(
        position + 1, source.subject, gw.settings.replay_batch, gw.settings.client_buffer_bytes
    )


def _end_of(found: Batch, position: int) -> int:
    return found.frames[-1].seq if found.frames else position


async def _catch_up(
    gw: GatewayState, source: Source, position: int, if_none_match: str | None
) -> Response:
    found = await _batch(gw, source, position)
    end = _end_of(found, position)
    up = found.pending == 0
    closed = await _closed_after(source, found)
    tag = etag(source.tag, position, end)
    cache = _IMMUTABLE if closed or not up else _AT_TAIL
    if if_none_match is not None and tag in (t.strip() for t in if_none_match.split(",")):
        return _reply(304, source, b"", end, up=up, cache=cache, tag=tag, closed=closed)
    content = body(source.mode, _payloads(found))
    return _reply(200, source, content, end, up=up, cache=cache, tag=tag, closed=closed)


async def _long_poll(
    gw: GatewayState, source: Source, position: int, cursor: str, slot: Slot
) -> Response:
    hub = source.hub
    signal = _Signal()
    sink = Sink(signal, gw.settings.client_buffer_bytes, gw.stats, hub.flusher)
    slot.stream = sink  # a revoked token's poll ends at once
    signal.woken = sink.done  # also set when the sink ends (shutdown): no wait past that
    loop = asyncio.get_running_loop()
    deadline = loop.time() + gw.settings.durable_long_poll_s
    async with hub.connect(sink) as client:
        # after=-1: live only; the reads below are the replay.
        sub = Subscription(source.key, sink, source.subject, after=-1, types=None, sessions=None)
        await client.subscribe(source.key, sub)
        while sink.reason is None:
            found = await _batch(gw, source, position)
            closed = await _closed_after(source, found)
            if found.frames:
                content = body(source.mode, _payloads(found))
                end = _end_of(found, position)
                return _reply(200, source, content, end, up=found.pending == 0,
                              cache=_AT_TAIL, stream_cursor=cursor, closed=closed)  # fmt: skip
            if closed:  # nothing will ever come: answer now
                return _reply(204, source, b"", position, up=True, cache=_AT_TAIL, closed=True)
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    await signal.woken.wait()
            except TimeoutError:
                break
            signal.woken.clear()
    return _reply(204, source, b"", position, up=True, cache=_AT_TAIL, stream_cursor=cursor)


def _reply(
    status: int, source: Source, content: bytes, next_seq: int, *, up: bool = False,
    cache: str, tag: str | None = None, stream_cursor: str | None = None, closed: bool = False,
) -> Response:  # fmt: skip
    # Content-Type set as is: Starlette would add a charset to text types.
    headers = {**SECURITY_HEADERS, "Content-Type": source.media,
               "Stream-Next-Offset": format_offset(next_seq), "Cache-Control": cache}  # fmt: skip
    if up:
        headers["Stream-Up-To-Date"] = "true"
    if tag is not None:
        headers["ETag"] = tag
    if stream_cursor is not None:
        headers["Stream-Cursor"] = stream_cursor
    if closed:
        headers["Stream-Closed"] = "true"
    if status == 204:
        del headers["Content-Type"]
    return Response(content, status_code=status, headers=headers)


def _raw(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in headers.items()]


class _Signal:
    """A long-poll's Output: keeps no bytes, only notes that a live message came."""

    kind: Kind = "sse"
    transport: asyncio.WriteTransport | None = None

    def __init__(self) -> None:
        self.woken = asyncio.Event()
        self.event: Callable[[Frame], bytes] = self._wake

    def _wake(self, frame: Frame) -> bytes:
        self.woken.set()
        return b""

    def batch(self, frames: list[Frame]) -> list[bytes]:
        return []

    def message(self, body: bytes) -> bytes:
        return b""

    def buffered(self) -> int:
        return 0

    def closing(self) -> bool:
        return False

    def write(self, parts: list[bytes]) -> None:
        pass

    def watch(self, receive: Receive, on_lost: Callable[[], None]) -> Watcher:
        raise NotImplementedError  # a long-poll ends by its deadline

    async def end(self, send: Send, last: Message) -> None:
        raise NotImplementedError
