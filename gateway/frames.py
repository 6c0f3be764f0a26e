"""Wire framing, pure: SSE messages in HTTP/1.1 chunks, WebSocket text frames, JSON replies.

An event is framed once, when it enters the process (`Frame`), and the same
bytes are written to every client's transport: SSE bytes already carry the
chunked transfer-encoding framing, WebSocket bytes the (unmasked,
uncompressed) frame header of a server-to-client text message.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from agentcast.codec import encode
from agentcast.cursor import format_cursor

HEARTBEAT: Final = b": keep-alive\n\n"
_WS_TEXT: Final = 0x81  # FIN + opcode 1 (text)


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
            self._sse = chunk(sse_event(self.cursor, self.type, self.payload))
        return self._sse

    @property
    def sse_message(self) -> bytes:
        """The SSE message without chunk framing (for replay batches)."""
        return sse_event(self.cursor, self.type, self.payload)

    @property
    def ws(self) -> bytes:
        """The WebSocket text frame `{"op":"event","cursor":C,"event":{...}}`."""
        if self._ws is None:
            body = b'{"op":"event","cursor":"%s","event":%s}' % (self.cursor.encode(), self.payload)
            self._ws = ws_text(body)
        return self._ws

    def __repr__(self) -> str:
        return f"Frame(seq={self.seq}, session={self.session!r}, type={self.type!r})"


def chunk(data: bytes) -> bytes:
    """`data` as one chunk of a chunked HTTP/1.1 body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


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


def ws_text(payload: bytes) -> bytes:
    """A complete, unmasked, uncompressed WebSocket text frame (server to client)."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", _WS_TEXT, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", _WS_TEXT, 126, size)
    else:
        header = struct.pack("!BBQ", _WS_TEXT, 127, size)
    return header + payload


def ws_reply(op: str, **fields: Any) -> bytes:
    """A WebSocket control reply such as `{"op":"pong"}`, framed."""
    return ws_text(encode({"op": op, **{k: v for k, v in fields.items() if v is not None}}))


def error_body(code: str, message: str, **extra: Any) -> bytes:
    """The HTTP error body `{"error": {"code": ..., "message": ...}}`."""
    return encode({"error": {"code": code, "message": message, **extra}})


def _one_line(value: str) -> bytes:
    return value.replace("\r", " ").replace("\n", " ").encode()
