"""The one seam: every use of a private part of nats-py, uvicorn or Starlette's ASGI contract.

The gateway, the producer and the consumers all step below these libraries
here and nowhere else; pyproject.toml bounds them above the newest version
checked.

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
| `uvicorn.Server.startup` / `shutdown` overridden (`StreamingServer`): uvicorn has no hook between "stop accepting" and "wait for connections", and never-ending streams must be told to end there; its startup is rewritten for given sockets (`lifespan`, `server_state`, `config.http_protocol_class`, `servers`, `started`, `STARTUP_FAILURE`) so the gateway accepts its own connections (gateway/accept.py's `Acceptor` is a `Listener` and touches no uvicorn part) | gateway/server.py | uvicorn 0.30 - 0.54 |
| a connection read first by the door's own protocol is handed to uvicorn's afterwards (`hand_over`: `transport.set_protocol`, then `connection_made` and `data_received` with the bytes read) | gateway/parking.py | uvicorn 0.54 |
| after `transport.abort()`, two loop turns let uvicorn run `connection_lost` before the app returns (`let_server_see_loss`) | gateway/sink.py | uvicorn 0.30 - 0.54 |
| `Client._send_command`, `_flush_queue`, `_flush_pending` and `nats.protocol.command.hpub_cmd`: a publish whose headers are already bytes (`send_hpub`; `can_send_hpub` says whether this nats-py has them) | producer/fastpub.py | nats-py 2.16 |
| `Subscription._pending_queue`: the queue of a callback-less subscription, read in bursts (`pending_queue`) | consumers/pull.py, consumers/buckets.py | nats-py 2.9 - 2.16 |
| `HttpToolsProtocol` subclassed (`guarded_http`): its parser callbacks (`on_message_begin`, `on_headers_complete`, `on_body`), `timeout_keep_alive_handler`, `.headers`, `.url`, `.parser`, `.pipeline`, `.transport`, `.loop`, `.cycle`, `.connections`, `.tasks`, to bound request heads and bodies, time out slow heads and answer `/healthz` without a task; uvicorn has no header size limit or header timeout for httptools. Its `.pipeline` deque, `.cycle.message_event` and `.flow._is_writable_event` are replaced by list-backed ones (`_Pipeline`, `_SlimEvent`, relying on asyncio.Event's `_waiters` and `_value`, checked on CPython 3.11): 2.2 KB less per waiting connection; the server's `.connections` and `.tasks` sets are given to `shrink` as connections close (`agentcast/memory.py`) | gateway/server.py | uvicorn 0.54 |

`guarded_http` is not part of the fast path: with it off the server still
bounds heads, bodies and slow clients.

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
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

import uvicorn
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.protocol import command
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import STARTUP_FAILURE  # type: ignore[attr-defined]

logger = logging.getLogger(__name__)


class Listener(Protocol):
    """What uvicorn's shutdown expects of each of its servers."""

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


Listen = Callable[[socket.socket, Callable[[], asyncio.Protocol], int], Listener]

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


def hand_over(transport: asyncio.Transport, protocol: asyncio.Protocol, read: bytes) -> None:
    """Give a connection already open, and what it has sent so far, to the server's protocol:
    uvicorn's protocol is told `connection_made` late and then hears those bytes, as if it
    had read them itself."""
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    if read:
        protocol.data_received(read)


async def let_server_see_loss() -> None:
    """After `transport.abort()`: `connection_lost` is scheduled with call_soon, and uvicorn's
    protocol must have run it (marking the cycle disconnected) before the app returns."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)


# -- uvicorn: the server ------------------------------------------------------------------------


class StreamingServer(uvicorn.Server):
    """uvicorn.Server that serves its sockets through `listen` and ends never-ending streams
    before waiting for connections.

    `listen(sock, protocol_factory, backlog)` returns what uvicorn keeps as a server: an
    object with `close()` and `async wait_closed()`; the gateway's accepts more than one
    connection per turn (gateway/accept.py).
    """

    def __init__(
        self, config: uvicorn.Config, before_shutdown: Callable[[], None], listen: Listen
    ) -> None:
        super().__init__(config)
        self._before_shutdown = before_shutdown
        self._listen = listen

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn's startup for given sockets, with `listen` in place of `loop.create_server`.
        if not sockets:
            raise RuntimeError("StreamingServer serves the sockets it is given")
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(STARTUP_FAILURE)
        config = self.config

        def create_protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state
            )

        self.servers = [self._listen(sock, create_protocol, config.backlog) for sock in sockets]  # type: ignore[misc]
        self.started = True
        # What is loaded by now (modules, the app, its models: ~50,000 objects) lives as long
        # as the process; frozen, it is left out of every later full collection, which a
        # burst of new connections triggers at each 25% growth of the long-lived objects.
        gc.freeze()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._before_shutdown()
        await super().shutdown(sockets)


# -- uvicorn: the HTTP protocol ---------------------------------------------------------------


class HeadLimits:
    """What `guarded_http` bounds, and `on_hit(setting)` to count each refusal."""

    __slots__ = ("body_bytes", "head_bytes", "head_timeout_s", "on_hit")

    def __init__(
        self, head_bytes: int, body_bytes: int, head_timeout_s: float, on_hit: Callable[[str], None]
    ) -> None:
        self.head_bytes = head_bytes
        self.body_bytes = body_bytes
        self.head_timeout_s = head_timeout_s
        self.on_hit = on_hit


class _HeadState:
    """Where one connection's current request head stands (`guarded_http`)."""

    __slots__ = ("body", "open", "refused", "size", "timer")

    def __init__(self) -> None:
        self.open = True
        self.size = 0
        self.body = 0
        self.refused = False
        self.timer: asyncio.TimerHandle | None = None


def guarded_http(
    limits: HeadLimits, *, shrink: Callable[[set[Any]], None] = lambda _: None
) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with a bounded request head and body, and a head timeout.

    A request head (request line and headers) over `head_bytes` and a body
    over `body_bytes` (declared or sent) get 413 (SPEC "Limits": 413 for sizes;
    the code, `headers_too_large` or `too_large`, tells which), and a connection that has
    not completed its head `head_timeout_s` after connecting (or after
    starting its next request) gets 408 and is closed: a slowloris client
    holds a timer and a socket, never a worker, and not for long. Each answer
    closes the connection.

    `GET /healthz` is answered here too, from the parser's callback: through
    the app it waited for an ASGI task of its own, behind every request of the
    same loop iteration, and during a reconnect storm (thousands of SSE
    requests at once) that put its p99 over 100 ms (bench/README.md, storm).
    Only when no other request of the connection is in flight, so pipelined
    answers keep their order; the connection is then closed, as a probe expects.

    As each connection closes, `shrink` is given the server's sets of connections and
    tasks, which CPython never shrinks by itself (agentcast/memory.py's `compact_set`).
    """

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        # One attribute, set in __init__ like uvicorn's own: more, or set later, would end the
        # instance dict's key sharing (28 keys; CPython shares at most 30) and cost ~1.3 KB
        # per connection.
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head = _HeadState()
            self.pipeline = _Pipeline()  # type: ignore[assignment]

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.flow._is_writable_event = _SlimEvent(is_set=True)
            self._start_head()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_timer()
            super().connection_lost(exc)
            shrink(self.connections)
            shrink(self.tasks)

        def data_received(self, data: bytes) -> None:
            head = self._head
            if head.refused:
                return
            if head.open:
                head.size += len(data)
            super().data_received(data)
            # Checked after parsing: the chunk may end the head and start the body.
            if head.open and head.size > limits.head_bytes and not head.refused:
                self._refuse(413, "headers_too_large", f"request head over {limits.head_bytes} bytes", "max_header_bytes")  # fmt: skip

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if not self._head.open:  # the next request on a kept-alive connection
                self._start_head()
            self._head.body = 0

        def on_headers_complete(self) -> None:
            self._head.open = False
            self._stop_timer()
            # A whole head can come in one read: measured again from what was parsed.
            size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
            if size > limits.head_bytes:
                self._refuse(413, "headers_too_large", f"request head over {limits.head_bytes} bytes", "max_header_bytes")  # fmt: skip
                return
            for name, value in self.headers:
                if name == b"content-length" and value.isdigit() and int(value) > limits.body_bytes:
                    self._too_large()
                    return
            if (
                self.url == b"/healthz"
                and self.parser.get_method() == b"GET"
                and (self.cycle is None or self.cycle.response_complete)
                and not self.pipeline
            ):
                self._head.refused = True  # the rest of this connection's input is ignored
                self.transport.write(_HEALTHY)
                self.transport.close()
                return
            earlier = self.cycle
            super().on_headers_complete()
            if self.cycle is not earlier:  # a new request's cycle, not yet waited on
                self.cycle.message_event = _SlimEvent()

        def on_body(self, body: bytes) -> None:
            head = self._head
            if head.refused:
                return
            head.body += len(body)
            if head.body > limits.body_bytes:
                self._too_large()
                return
            super().on_body(body)

        def on_message_complete(self) -> None:
            if not self._head.refused:
                super().on_message_complete()

        def timeout_keep_alive_handler(self) -> None:
            limits.on_hit("idle_timeout_s")
            super().timeout_keep_alive_handler()

        def _start_head(self) -> None:
            head = self._head
            head.open = True
            head.size = 0
            self._stop_timer()
            head.timer = self.loop.call_later(limits.head_timeout_s, self._head_timeout)

        def _stop_timer(self) -> None:
            head = self._head
            if head.timer is not None:
                head.timer.cancel()
                head.timer = None

        def _head_timeout(self) -> None:
            head = self._head
            head.timer = None
            if head.open and not head.refused and not self.transport.is_closing():
                self._refuse(408, "request_timeout", "request head not received in time", "header_timeout_s")  # fmt: skip

        def _too_large(self) -> None:
            self._refuse(413, "too_large", f"request body over {limits.body_bytes} bytes", "max_request_bytes")  # fmt: skip

        def _refuse(self, status: int, code: str, message: str, setting: str) -> None:
            self._head.refused = True
            self._stop_timer()
            limits.on_hit(setting)
            cycle = self.cycle
            if cycle is None or cycle.response_complete or not cycle.response_started:
                body = b'{"error":{"code":"%s","message":"%s"}}' % (code.encode(), message.encode())
                self.transport.write(
                    b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                    % (status, _REASONS[status], len(body), body)
                )
            if cycle is not None:
                cycle.disconnected = True  # the app (if it runs) sees a disconnect
                cycle.message_event.set()
            # Closing with unread input would reset the connection and lose the answer: end
            # our side, discard what still comes for a moment, then close.
            if self.transport.can_write_eof():
                self.transport.write_eof()
                self.loop.call_later(_LINGER_S, self.transport.close)
            else:
                self.transport.close()

    return GuardedHttpToolsProtocol


class _SlimEvent(asyncio.Event):
    """An `asyncio.Event` whose waiters are a list. Its deque holds a 64-slot block even
    when empty (~750 bytes with the deque), and uvicorn keeps two events per connection
    (its cycle's `message_event`, its flow control's `_is_writable_event`) that are rarely
    waited on; during a reconnect storm thousands of connections wait at once
    (bench/README.md, storm). asyncio's Event only appends, removes and iterates them."""

    def __init__(self, *, is_set: bool = False) -> None:
        # Not super().__init__(): it would build the deque this replaces.
        self._waiters: list[asyncio.Future[bool]] = []  # type: ignore[assignment]
        self._value = is_set


class _Pipeline(list[Any]):
    """uvicorn's queue of pipelined requests as a list, for the same reason as `_SlimEvent`:
    uvicorn only calls `appendleft`, `pop` and tests it for truth."""

    __slots__ = ()

    def appendleft(self, item: Any) -> None:
        self.insert(0, item)


_LINGER_S: Final = 2.0
_REASONS: Final = {408: b"Request Timeout", 413: b"Content Too Large"}
_HEALTHY: Final = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n"
    b'connection: close\r\n\r\n{"ok":true}'
)


# -- nats-py's write path and subscription queue (producer, consumers) -------------------

_WRITE_PATH: Final = ("_send_command", "_flush_queue", "_flush_pending")


def can_send_hpub(nc: Client) -> bool:
    """Whether this nats-py has what `send_hpub` uses."""
    return hasattr(command, "hpub_cmd") and all(hasattr(nc, name) for name in _WRITE_PATH)


async def send_hpub(nc: Client, subject: str, reply: str, header: bytes, payload: bytes) -> None:
    """Publish with headers already encoded (`NATS/1.0...\\r\\n\\r\\n`): what
    `Client._send_publish` does after encoding them."""
    nc.stats["out_msgs"] += 1
    nc.stats["out_bytes"] += len(payload)
    await nc._send_command(command.hpub_cmd(subject, reply, header, payload))
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()


def pending_queue(sub: Subscription) -> asyncio.Queue[Msg]:
    """nats-py's queue of a callback-less subscription (read in bursts, not one await each)."""
    return sub._pending_queue
