"""The one seam: every use of a private part of nats-py, uvicorn or Starlette's ASGI contract.

The gateway's fast path (settings.gateway_fastpath, env
`AGENTCAST_GATEWAY_FASTPATH`, on by default) steps below two libraries. Each
step is here, with the versions it was checked against; pyproject.toml bounds
those libraries above the newest one checked. With the fast path off (`0`),
none of this runs except `StreamingServer`: live messages come through
nats-py's subscription callbacks (with its pending limits) and streams are
written through ASGI `send`, and tests/test_gateway_plain.py runs the stream,
resume and slow-client tests that way.

| reach-in | where used | checked against |
|---|---|---|
| `Client._process_msg(sid, subject, reply, data, headers)`: the parser's per-message hook, wrapped (`install_message_hook`) | gateway/upstream.py (the Tap) | nats-py 2.9 - 2.16 |
| `Subscription._id`: the sid the parser passes to that hook (`subscription_id`) | gateway/upstream.py | nats-py 2.9 - 2.16 |
| the server's own ASGI `send` is a bound method of the protocol cycle, whose `.transport` is the connection (`server_transport`) | gateway/sink.py | uvicorn 0.30 - 0.54, httptools and h11, websockets-sansio |
| the connection's protocol is wrapped with `transport.set_protocol` to hear `connection_lost` (`Watch`) | gateway/sink.py | uvicorn 0.30 - 0.54 |
| HTTP/1.1 chunks and WebSocket frame headers written by hand (`http_chunk`, `ws_frame`): uvicorn chose chunked encoding when the headers went out without a length, and sends no per-message deflate (`ws_per_message_deflate=False`) | gateway/frames.py, gateway/sink.py | uvicorn 0.30 - 0.54 |
| `uvicorn.Server.startup` / `shutdown` overridden (`StreamingServer`): uvicorn has no hook between "stop accepting" and "wait for connections", and never-ending streams must be told to end there | gateway/server.py | uvicorn 0.30 - 0.54 |
| after `transport.abort()`, two loop turns let uvicorn run `connection_lost` before the app returns (`let_server_see_loss`) | gateway/sink.py | uvicorn 0.30 - 0.54 |

The producer's write path has its own nats-py seam, producer/fastpub.py
(`Client._send_command` / `_flush_pending` family, nats-py 2.16), bounded by
the same `nats-py<2.17`.

Each helper degrades rather than breaks: a nats-py without the hook leaves the
Tap off, a server without a reachable transport is refused loudly at the
first stream (run with the fast path off there).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any, Final

import uvicorn
from nats.aio.client import Client
from nats.aio.subscription import Subscription

logger = logging.getLogger(__name__)

MessageHook = Callable[[int, bytes, bytes, bytes, bytes | None], Awaitable[None]]
"""nats-py's `_process_msg(sid, subject, reply, data, headers)`."""

_WS_TEXT: Final = 0x81  # FIN + opcode 1 (text)


# -- nats-py ------------------------------------------------------------------------------


def install_message_hook(nc: Client, wrap: Callable[[MessageHook], MessageHook]) -> bool:
    """Replace the client's per-message hook by `wrap(original)`; False if nats-py has none."""
    found = getattr(nc, "_process_msg", None)
    if found is None or not _takes_parser_args(found):
        logger.warning("nats-py has no usable _process_msg hook: live path via callbacks")
        return False
    nc._process_msg = wrap(found)  # type: ignore[method-assign,assignment]
    return True


def subscription_id(sub: Subscription) -> int:
    """The sid nats-py's parser passes to the message hook for `sub`'s messages."""
    sid: int = sub._id
    return sid


def _takes_parser_args(method: Any) -> bool:
    try:
        params = list(inspect.signature(method).parameters)
    except (TypeError, ValueError):
        return False
    return inspect.iscoroutinefunction(method) and params == [
        "sid", "subject", "reply", "data", "headers"
    ]  # fmt: skip


# -- uvicorn: the connection under ASGI -----------------------------------------------------


def server_transport(send: object) -> asyncio.WriteTransport:
    """The connection's transport, from the server's own ASGI `send` (a method of uvicorn's
    request cycle or WebSocket protocol, both of which hold `.transport`)."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None or not hasattr(transport, "get_write_buffer_size"):
        raise RuntimeError(
            "the gateway fast path needs uvicorn (httptools or h11, websockets-sansio); "
            "set AGENTCAST_GATEWAY_FASTPATH=0 for other servers"
        )
    result: asyncio.WriteTransport = transport
    return result


def http_chunk(data: bytes) -> bytes:
    """`data` as one chunk of a chunked HTTP/1.1 body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def ws_frame(payload: bytes) -> bytes:
    """A complete, unmasked, uncompressed WebSocket text frame (server to client)."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", _WS_TEXT, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", _WS_TEXT, 126, size)
    else:
        header = struct.pack("!BBQ", _WS_TEXT, 127, size)
    return header + payload


class Watch(asyncio.Protocol):
    """The connection's own protocol, unchanged, except that losing the peer calls `on_lost`.

    An SSE client sends nothing after its request, so rather than a task
    awaiting ASGI `receive()` for the disconnect (a task, four coroutines and
    a future per idle connection), `Watch` wraps the server's protocol to hear
    `connection_lost` itself; every call still reaches the server's protocol.
    `stop()` puts the server's protocol back.
    """

    __slots__ = ("_inner", "_on_lost", "_transport")

    def __init__(self, transport: asyncio.WriteTransport, on_lost: Callable[[], None]) -> None:
        self._transport = transport
        self._on_lost = on_lost
        self._inner: asyncio.Protocol = transport.get_protocol()  # type: ignore[assignment]
        transport.set_protocol(self)
        if transport.is_closing():  # gone before the wrapper was in place
            on_lost()

    def stop(self) -> None:
        if self._transport.get_protocol() is self:
            self._transport.set_protocol(self._inner)

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
        self._on_lost()
        self._inner.connection_lost(exc)


async def let_server_see_loss() -> None:
    """After `transport.abort()`: `connection_lost` is scheduled with call_soon, and uvicorn's
    protocol must have run it (marking the cycle disconnected) before the app returns."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)


# -- uvicorn: the server ------------------------------------------------------------------------


class StreamingServer(uvicorn.Server):
    """uvicorn.Server that ends never-ending streams before waiting for connections."""

    def __init__(self, config: uvicorn.Config, before_shutdown: Callable[[], None]) -> None:
        super().__init__(config)
        self._before_shutdown = before_shutdown

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # What is loaded by now (modules, the app, its models: ~50,000 objects) lives as long
        # as the process; frozen, it is left out of every later full collection, which a
        # burst of new connections triggers at each 25% growth of the long-lived objects.
        gc.freeze()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._before_shutdown()
        await super().shutdown(sockets)
