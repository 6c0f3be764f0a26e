"""Durable Streams offsets and long-poll cursors, pure.

An offset is a stream sequence written as 20 zero-padded digits, so offsets
sort as text the way they sort as numbers (a raw "10" < "9"). For a session
it is the agentcast cursor of the last event read, padded: a client may pass
either form, and resume after it is exact for the same reason cursors are
(gateway/feed.py). `0` (all zeros) is the position before the first event,
the tail of an empty stream.
"""

from __future__ import annotations

import random
import re
import time
from typing import Final

from gateway.errors import ApiError

START: Final = 0
"""`offset=-1` (or no offset): from the first retained message."""
NOW: Final = -1
"""`offset=now`: from the tail as it is when the request arrives."""
_DIGITS: Final = 20
OFFSET: Final = re.compile(f"-1|now|[0-9]{{1,{_DIGITS}}}")
"""Every `offset` value the read path takes (the OpenAPI schema's pattern too)."""
_MAX_SEQ: Final = 2**64 - 1
"""JetStream sequences are uint64: a larger offset was never issued (agentcast/cursor.py)."""
_EPOCH_S: Final = 1728432000  # 2024-10-09T00:00:00Z, the protocol's cursor epoch
_INTERVAL_S: Final = 20
_JITTER_INTERVALS: Final = (1, 180)
"""1 s to 1 h ahead when a client's cursor collides with ours (PROTOCOL.md: cursor)."""


def format_offset(seq: int) -> str:
    return f"{seq:0{_DIGITS}d}"


def parse_offset(values: list[str]) -> int:
    """START, NOW or a stream sequence from the request's `offset` values; 400 otherwise."""
    if not values:
        return START
    if len(values) > 1:
        raise ApiError(400, "invalid_cursor", "offset given more than once")
    value = values[0]
    if value == "-1":
        return START
    if value == "now":
        return NOW
    if not OFFSET.fullmatch(value) or int(value) > _MAX_SEQ:
        raise ApiError(400, "invalid_cursor", f"invalid offset {value[:40]!r}")
    return int(value)


def stream_cursor(client: str | None, now_s: float | None = None) -> str:
    """The `Stream-Cursor` to hand out: the current 20 s interval, or, when the client already
    holds that one (or a later one), a strictly greater one with jitter, so that CDN-cached
    long-polls never cycle."""
    current = int(((time.time() if now_s is None else now_s) - _EPOCH_S) // _INTERVAL_S)
    held = int(client) if client and client.isascii() and client.isdigit() else -1
    if held >= current:
        current = held + random.randint(*_JITTER_INTERVALS)
    return str(current)
