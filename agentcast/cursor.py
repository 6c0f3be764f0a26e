"""Cursors: the opaque resume token clients hold, mapped to a JetStream position.

A cursor is the stream sequence of the event in AGENTCAST_EVENTS, written in
decimal. Clients must treat it as opaque; the gateway and archiver parse it
here and nowhere else.
"""

from __future__ import annotations

from agentcast.errors import InvalidCursor

_MAX_LEN = 20
_MAX_SEQ = 2**64 - 1
"""JetStream sequences are uint64: a larger number was never issued (and JetStream
answers a direct get beyond it with an error, not "no message")."""


def format_cursor(stream_seq: int) -> str:
    return str(stream_seq)


def parse_cursor(value: str) -> int:
    """The stream sequence a cursor names; raises InvalidCursor."""
    # Exactly what format_cursor writes: `007` names no cursor ever issued.
    if (
        not value
        or len(value) > _MAX_LEN
        or not value.isascii()
        or not value.isdigit()
        or value[0] == "0"
    ):
        raise InvalidCursor(value)
    seq = int(value)
    if not 1 <= seq <= _MAX_SEQ:
        raise InvalidCursor(value)
    return seq
