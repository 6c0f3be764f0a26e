"""A client connection as a sink: shared frame bytes written to its Output (gateway/output.py).

Live frames never wait: `offer` queues the frame's bytes on the sink and the
hub's Flusher writes each sink's queue to its output in one `write` once
the batch of NATS messages being dispatched is done (one call_soon per batch,
not per frame), so a client that receives several events from one read of
the NATS socket costs one system call, not several. If the output already
holds more than `limit` unsent bytes the client has fallen behind and the
sink finishes with reason `lagged`; its route tells the client its cursor
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
from typing import Any, Final, Literal

from starlette.types import Receive, Send

from gateway.frames import Frame
from gateway.output import RAW_SEND, Kind, Output
from gateway.telemetry import Stats

logger = logging.getLogger(__name__)

Reason = Literal["lagged", "shutdown", "disconnected", "error", "revoked", "flood"]
"""Why a stream ended; `revoked`: its token was revoked; `flood`: a WebSocket over its frame rate."""

_POLL_S: Final = 0.01
_POLL_MAX_S: Final = 0.2
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
                sink.broken()


class Sink:
    """One client's stream state: its output, its backlog bound, and why it ended."""

    __slots__ = ("_event", "_out", "_out_bytes", "_pick", "_transport", "_waiter", "active",
                 "flusher", "idle_passes", "kind", "limit", "output", "reason", "stats")  # fmt: skip

    def __init__(
        self, output: Output, limit: int, stats: Stats, flusher: Flusher | None = None
    ) -> None:
        self.output = output
        self.kind: Kind = output.kind
        self._pick = output.event
        self._transport = output.transport
        self.limit = limit
        self.stats = stats
        self.flusher = flusher or Flusher()
        self.reason: Reason | None = None
        self._out: list[bytes] | None = None
        self._out_bytes = 0
        self.active = False
        """Sent events since the hub's last heartbeat pass (which then skips this client)."""
        self.idle_passes = 0
        # Made on demand: an idle connection carries no Event or Future.
        self._waiter: asyncio.Future[None] | None = None
        self._event: asyncio.Event | None = None

    def offer(self, frame: Frame) -> bool:
        """Queue a live frame for this batch's write, or finish as lagged if the client is too far behind."""
        if self.reason is not None:
            return False
        transport = self._transport  # inline, not buffered(): this runs per delivery
        backlog = (
            transport.get_write_buffer_size() if transport is not None else self.output.buffered()
        )
        if backlog + self._out_bytes > self.limit:
            self.finish("disconnected" if self.output.closing() else "lagged")
            return False
        data = self._pick(frame)
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
        transport = self._transport
        if transport is not None:  # the fast path, spelled out: this runs per delivery
            if transport.is_closing():
                self.finish("disconnected")
                return
            transport.write(out[0] if len(out) == 1 else b"".join(out))
        elif self.output.closing():
            self.finish("disconnected")
            return
        else:
            self.output.write(out)
        self.active = True
        self.stats.events_out[self.kind] += len(out)
        self.stats.bytes_out[self.kind] += size

    def heartbeat_due(self, passes: int) -> bool:
        """One heartbeat pass (the hub makes `passes` per interval): True when this client has
        been sent nothing for `passes - 1` whole passes, so a heartbeat now comes at most one
        interval after the last frame."""
        if self.active:
            self.active = False
            self.idle_passes = 0
            return False
        self.idle_passes += 1
        if self.idle_passes < passes - 1:
            return False
        self.idle_passes = 0
        return True

    def broken(self) -> None:
        """Writing failed: drop what is queued and end the stream."""
        self._out = None
        self._out_bytes = 0
        self.finish("error")

    def send(self, body: bytes) -> None:
        """Write a small control message (heartbeat, reply, notice) unconditionally, after
        queued frames; `body` is framed by the output."""
        if self._out is not None:
            self.flush()
        if not self.output.closing():
            self.output.write([self.output.message(body)])

    async def push(self, frames: list[Frame]) -> bool:
        """Write replayed frames, then wait until the client has room again."""
        return await self.push_parts(self.output.batch(frames), len(frames))

    async def push_parts(self, parts: list[bytes], events: int) -> bool:
        """Write framed bytes (see `push`); `events` counts toward the delivery stats."""
        if self._out is not None:
            self.flush()
        output = self.output
        if self.reason is not None or output.closing():
            return False
        output.write(parts)
        self.active = True
        self.stats.events_out[self.kind] += events
        self.stats.bytes_out[self.kind] += sum(map(len, parts))
        low = self.limit // 2
        delay = _POLL_S
        last_size = output.buffered()
        last_progress = time.monotonic()
        while last_size > low:
            if self.reason is not None or output.closing():
                return False
            await asyncio.sleep(delay)
            size = output.buffered()
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
        """End the stream (first reason wins); queued frames are written first."""
        if self.reason is not None:
            return
        if self._out is not None:
            self.flush()  # they count in the cursors the client is told
            if self.reason is not None:
                return
        self.reason = reason
        if reason == "lagged":
            self.stats.lagged[self.kind] += 1
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

    def buffered(self) -> int:
        transport = self._transport
        if transport is not None:
            return transport.get_write_buffer_size() + self._out_bytes
        return self.output.buffered() + self._out_bytes

    def lost(self) -> None:
        """The peer went away (the output heard it)."""
        self.finish("disconnected")


Stream = Callable[[Receive, Send], Awaitable[None]]


async def hand_off(scope: MutableMapping[str, Any], receive: Receive, send: Send,
                   stream: Stream) -> None:  # fmt: skip
    """Carry a started response on below the framework: on the fast path `stream(receive,
    send)` runs once the route and every middleware have returned (gateway/app.py), so a
    connection held for hours keeps no request objects, dependency exit stacks or middleware
    frames alive. On the plain path it runs here, inside the framework.
    """
    if RAW_SEND in scope:
        scope[STREAM] = stream
    else:
        await stream(receive, send)
