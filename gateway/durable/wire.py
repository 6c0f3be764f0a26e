"""Durable Streams bytes, pure: bodies by content mode, SSE data and control events, ETags.

JSON mode (sessions, and app streams created as `application/json`) stores one
JSON value per message, and a read is their JSON array. Text and binary modes
store raw bytes, and a read is their concatenation; over SSE binary data is
base64 (header `Stream-SSE-Data-Encoding: base64`). SSE framing is LF only and
every payload line gets its own `data:` line, so no payload can end an event
or forge a control event. Every data event is followed by its control event.
"""

from __future__ import annotations

import base64
import enum
import re
from typing import Final

from agentcast.codec import encode
from gateway.durable.offsets import format_offset

JSON_TYPE: Final = "application/json"
_LINE_BREAK: Final = re.compile(rb"\r\n|\r|\n")


class Mode(enum.Enum):
    JSON = "json"
    TEXT = "text"
    BINARY = "binary"


def media_type(content_type: str | None) -> str:
    """`Content-Type` without parameters, lower case; octet-stream when absent."""
    base = (content_type or "").split(";", 1)[0].strip().lower()
    return base or "application/octet-stream"


def mode_of(media: str) -> Mode:
    if media == JSON_TYPE or media.endswith("+json"):
        return Mode.JSON
    if media.startswith("text/"):
        return Mode.TEXT
    return Mode.BINARY


def body(mode: Mode, payloads: list[bytes]) -> bytes:
    """A catch-up or long-poll body: a JSON array, or the bytes one after another."""
    if mode is Mode.JSON:
        return b"[" + b",".join(payloads) + b"]"
    return b"".join(payloads)


def sse_data(mode: Mode, payloads: list[bytes]) -> bytes:
    """One `event: data` for `payloads` (JSON: one array; binary: base64 of their bytes)."""
    text = body(mode, payloads)
    if mode is Mode.BINARY:
        text = base64.b64encode(text)
    lines = _LINE_BREAK.split(text)
    return b"event: data\n" + b"".join(b"data:" + line + b"\n" for line in lines) + b"\n"


def sse_control(next_seq: int, cursor: str, *, up_to_date: bool, closed: bool = False) -> bytes:
    """The control event after a data event (or alone: caught up, closed)."""
    fields: dict[str, object] = {"streamNextOffset": format_offset(next_seq)}
    if closed:  # the end: no cursor to come back with
        fields["streamClosed"] = True
    else:
        fields["streamCursor"] = cursor
    if up_to_date or closed:
        fields["upToDate"] = True  # absent, not false: clients look for the key
    return b"event: control\ndata:" + encode(fields) + b"\n\n"


def etag(tag: str, start: int, end: int) -> str:
    """The ETag of the read of `tag` after `start` up to `end`: those bytes never change."""
    return f'"{tag}:{format_offset(start)}:{format_offset(end)}"'
