"""One client's formatted stream: quiet replay up to its cursor, prelude, coalescing, translation.

`FormatStream` is pure (frames in, SSE messages out). `FormattedOutput` puts
it in front of a connection's Output (gateway/output.py), so the Sink and the
hub treat a formatted client like any other: the translated bytes of a live
frame are what it offers, a replay batch is one write. The default format
never comes here; its frames keep their shared, once-framed bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from starlette.types import Message, Receive, Send

from agentcast.cursor import format_cursor
from gateway.formats.coalesce import Coalescer
from gateway.formats.items import Item, Translator
from gateway.formats.shared import Shared, follow
from gateway.frames import Frame
from gateway.output import Kind, Output, Watcher
from gateway.sink import Sink


class FormatStream:
    """Frames in stream order -> the client's SSE messages, in order."""

    __slots__ = ("_coalescer", "_prelude", "coalesce_ms", "diverged", "last_seq", "quiet_until",
                 "shareable", "shared", "translator")  # fmt: skip

    def __init__(
        self, translator: Translator, *, quiet_until: int = 0, coalesce_ms: int = 0,
        shareable: bool = False,
    ) -> None:  # fmt: skip
        self.translator = translator
        self.coalesce_ms = coalesce_ms
        self.shareable = shareable and coalesce_ms == 0
        """Live events may be translated once for every client of the session (shared.py)."""
        self.shared: Shared | None = None
        self.last_seq = 0
        """The last frame this stream's own translator read."""
        self.diverged = False
        """A shared translation was asked for an event it no longer holds: end the stream."""
        self.quiet_until = quiet_until
        """Events up to this stream sequence are replayed for state only (a mid-run join)."""
        self._prelude = quiet_until > 0
        self._coalescer = Coalescer(coalesce_ms) if coalesce_ms > 0 else None

    @property
    def done(self) -> bool:
        return self.translator.done

    @property
    def holding(self) -> bool:
        return self._coalescer is not None and self._coalescer.holding

    def feed(self, frames: Iterable[Frame], *, live: bool = False) -> list[bytes]:
        """The messages for `frames`; `live`: they come from the hub, as to every client of
        the session, so a Shared translator may write them (see `_follow`)."""
        out: list[bytes] = []
        translator, coalescer = self.translator, self._coalescer
        for frame in frames:
            if live and self.shared is None and self.shareable and not self._prelude:
                self._follow(frame.seq)
            if self.shared is not None:
                shared = self.shared.messages(frame)
                if shared is None:
                    self.diverged = True
                    return out
                out += shared
                continue
            self.last_seq = frame.seq
            if frame.seq <= self.quiet_until:
                translator.feed(Item(frame), quiet=True)
                continue
            if self._prelude:
                out += self.caught_up()
            items = [Item(frame)] if coalescer is None else coalescer.push(Item(frame))
            for item in items:
                out += translator.feed(item, quiet=False)
        return out

    def _follow(self, seq: int) -> None:
        """Before translating live frame `seq`: hand over to the Shared translator of this
        lineage if it has read just what this one has (or already `seq` itself)."""
        shared = follow(self.translator, self.last_seq, seq)
        if shared is not None:
            self.shared = shared
            self.translator = shared.translator

    def caught_up(self) -> list[bytes]:
        """The prelude, once: when the first event after the cursor comes, or replay ends."""
        if not self._prelude:
            return []
        self._prelude = False
        return self.translator.prelude(format_cursor(self.quiet_until))

    def expire(self) -> list[bytes]:
        """The coalescing window passed: release what is held."""
        if self._coalescer is None:
            return []
        out: list[bytes] = []
        for item in self._coalescer.drain():
            out += self.translator.feed(item, quiet=False)
        return out


class FormattedOutput:
    """An Output whose events are translated by a FormatStream (see the module docstring)."""

    kind: Kind = "sse"

    def __init__(self, inner: Output, stream: FormatStream) -> None:
        self.inner = inner
        self.stream = stream
        self.transport = inner.transport
        self.event: Callable[[Frame], bytes] = self._live
        self._window_s = stream.coalesce_ms / 1000
        self._sink: Sink | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    def bind(self, sink: Sink) -> None:
        """The sink that writes this output (for timed releases and the end of the stream)."""
        self._sink = sink

    def _live(self, frame: Frame) -> bytes:
        return self._framed(self.stream.feed((frame,), live=True))

    def batch(self, frames: list[Frame]) -> list[bytes]:
        data = self._framed(self.stream.feed(frames))
        return [data] if data else []

    def message(self, body: bytes) -> bytes:
        return self.inner.message(body)

    def _framed(self, messages: list[bytes]) -> bytes:
        self._after()
        # Never an empty chunk: on the wire that would end the HTTP response.
        return self.inner.message(b"".join(messages)) if messages else b""

    def _after(self) -> None:
        sink = self._sink
        if sink is None:
            return
        loop = self._loop
        if self.stream.diverged:
            loop.call_soon(sink.finish, "lagged")  # it resumes exactly from what it got
        elif self.stream.done:
            self._cancel_timer()
            # After this write is queued: finish() flushes what the sink holds first.
            loop.call_soon(sink.finish, "disconnected")
        elif self.stream.holding and self._timer is None:
            self._timer = loop.call_later(self._window_s, self._expire)

    def _expire(self) -> None:
        self._timer = None
        sink = self._sink
        messages = self.stream.expire()
        if sink is not None and messages and sink.reason is None:
            sink.send(b"".join(messages))
        self._after()

    def caught_up(self) -> None:
        """Replay reached the end of the stream: a joining client's prelude goes now if the
        events after its cursor have not brought it yet."""
        messages = self.stream.caught_up()
        if self._sink is not None and messages:
            self._sink.send(b"".join(messages))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def buffered(self) -> int:
        return self.inner.buffered()

    def closing(self) -> bool:
        return self.inner.closing()

    def write(self, parts: list[bytes]) -> None:
        self.inner.write(parts)

    def watch(self, receive: Receive, on_lost: Callable[[], None]) -> Watcher:
        return self.inner.watch(receive, on_lost)

    async def end(self, send: Send, last: Message) -> None:
        self._cancel_timer()
        await self.inner.end(send, last)
