"""What the stream holds last for a session: where a publisher resumes, or whom it lost to.

A session has one writer (producer/publisher.py): each event is published
with the stream sequence of the session's previous event as the expected
last one. After a refusal or a reconnect the publisher reads the session's
last event here and compares it with what it wrote itself, which tells an
event the server lost in a crash (resend it) from one someone else wrote
(stop: WriterConflict).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from agentcast.codec import decode_loose
from agentcast.subjects import EVENTS_STREAM, session_events

EXPECTED_LAST = "Nats-Expected-Last-Subject-Sequence"
EXPECTED_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
WRONG_LAST_SEQUENCE = 10071
"""JetStream's error code for a publish whose expected last sequence does not hold."""


class LastEvent(NamedTuple):
    """A stored event of a session, as far as a writer needs it."""

    seq: int
    """The envelope's seq; 0 when the session has no event (or it does not decode)."""
    stream_seq: int
    run: int
    type: str
    payload: bytes


NO_EVENT = LastEvent(0, 0, 0, "", b"")


def expect_after(headers: dict[str, str], session: str, stream_seq: int) -> dict[str, str]:
    """Headers that make JetStream refuse the event unless `stream_seq` is the session's last."""
    return {**headers, EXPECTED_LAST: str(stream_seq), EXPECTED_SUBJECT: session_events(session)}


async def last_event(js: JetStreamContext, session: str) -> LastEvent:
    """The session's last stored event (NO_EVENT if none). Raises on NATS errors."""
    try:
        msg = await js.get_last_msg(EVENTS_STREAM, session_events(session), direct=True)
    except NotFoundError:
        return NO_EVENT
    return _lift(msg.seq or 0, msg.data or b"")


async def events_after(
    js: JetStreamContext, session: str, stream_seq: int, limit: int
) -> list[LastEvent] | None:
    """The session's events stored after `stream_seq`, oldest first; None if over `limit`."""
    found: list[LastEvent] = []
    subject = session_events(session)
    while len(found) <= limit:
        try:
            msg = await js.get_msg(
                EVENTS_STREAM, seq=stream_seq + 1, subject=subject, next=True, direct=True
            )
        except NotFoundError:
            return found
        event = _lift(msg.seq or 0, msg.data or b"")
        found.append(event)
        stream_seq = event.stream_seq
    return None


def stored_prefix(
    head: LastEvent, kept: Sequence[tuple[int, bytes]], base: tuple[int, int]
) -> tuple[int, bool] | None:
    """How many of a writer's kept events the server has, judged from the session's head.

    `kept` is (seq, payload) of the events the writer still holds, oldest
    first; `base` is (seq, stream seq) of the one before them. Returns
    (n, lost): the first n are stored (the head is the n-th, byte for byte),
    and `lost` when the server lost even events older than `kept`; None when
    the head is an event this writer did not write: another writer.
    """
    for n, (seq, payload) in enumerate(kept, 1):
        if seq == head.seq:
            return (n, False) if payload == head.payload else None
    if (head.seq, head.stream_seq) == base:
        return 0, False
    if head.stream_seq < base[1]:
        return 0, True  # older than the base: not a newer writer, a loss
    return None


def _lift(stream_seq: int, payload: bytes) -> LastEvent:
    try:
        event = decode_loose(payload)
    except msgspec.DecodeError:
        return LastEvent(0, stream_seq, 0, "", payload)
    return LastEvent(event.seq, stream_seq, event.run, event.type, payload)
