"""Wire framing, pure: SSE messages, WebSocket JSON messages, error bodies.

An event is framed once, when it enters the process (`Frame`), and the same
bytes go to every client. For the fast path (agentcast/_internals.py) they also
carry what the server would add: SSE bytes the chunked transfer-encoding
framing, WebSocket bytes the frame header of a server-to-client text message.
Which of the four a client gets is decided by its Output (gateway/output.py).
"""

from __future__ import annotations

from typing import Any, Final

from agentcast._internals import http_chunk, ws_frame
from agentcast.codec import encode
from agentcast.cursor import format_cursor

HEARTBEAT: Final = b": keep-alive\n\n"


class Frame:
    """One stored event, framed lazily once per transport kind and shared by all clients."""

    __slots__ = ("_sse", "_ws", "payload", "seq", "session", "type")

    def __init__(self, seq: int, session: str, type: str, payload: bytes) -> None:
        self.seq = seq
        self.session = session
        self.type = type
        self.payload = payload
        self._sse: bytes | None = None
        self._ws: bytes | None = None

    @property
    def cursor(self) -> str:
        return format_cursor(self.seq)

    @property
    def sse(self) -> bytes:
        """The SSE message as one HTTP/1.1 chunk."""
        if self._sse is None:
            self._sse = http_chunk(self.sse_message)
        return self._sse

    @property
    def sse_message(self) -> bytes:
        """The SSE message without chunk framing (for replay batches)."""
        return sse_event(self.cursor, self.type, self.payload)

    @property
    def ws(self) -> bytes:
        """The WebSocket text frame of `ws_message`."""
        if self._ws is None:
            self._ws = ws_frame(self.ws_message)
        return self._ws

    @property
    def ws_message(self) -> bytes:
        """The WebSocket message `{"op":"event","cursor":C,"event":{...}}`, unframed."""
        return b'{"op":"event","cursor":"%s","event":%s}' % (self.cursor.encode(), self.payload)

    def __repr__(self) -> str:
        return f"Frame(seq={self.seq}, session={self.session!r}, type={self.type!r})"


def sse_event(event_id: str | None, event: str | None, data: bytes) -> bytes:
    """An SSE message; `data` is split on line breaks, `id`/`event` lose theirs."""
    parts = []
    if event_id is not None:
        parts.append(b"id: " + _one_line(event_id) + b"\n")
    if event is not None:
        parts.append(b"event: " + _one_line(event) + b"\n")
    if b"\n" in data or b"\r" in data:
        for line in data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
            parts.append(b"data: " + line + b"\n")
    else:
        parts.append(b"data: " + data + b"\n")
    parts.append(b"\n")
    return b"".join(parts)


def sse_retry(retry_ms: int, comment: str | None = None) -> bytes:
    """A `retry:` hint (the client's reconnection delay), with an optional comment."""
    text = b"retry: %d\n" % max(0, retry_ms)
    if comment:
        text = b": " + _one_line(comment) + b"\n" + text
    return text + b"\n"


def ws_reply(op: str, **fields: Any) -> bytes:
    """A WebSocket control reply such as `{"op":"pong"}` (unframed; fields that are None left out)."""
    return encode({"op": op, **{k: v for k, v in fields.items() if v is not None}})


def error_body(code: str, message: str, **extra: Any) -> bytes:
    """The HTTP error body `{"error": {"code": ..., "message": ...}}`."""
    return encode({"error": {"code": code, "message": message, **extra}})


def _one_line(value: str) -> bytes:
    return value.replace("\r", " ").replace("\n", " ").encode()
