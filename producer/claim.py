"""Claiming a session for a run: where its seq continues, and no two runs at once.

A run may start only when the session's last event is terminal (or it has
none). The claim publishes `run.queued` with JetStream's expected-last-
subject-sequence check over `agentcast.evt.<session>.>`, so two workers racing
for one session cannot both win: the loser's publish is refused and it reads
the session again. The claim returns where `run.queued` was stored: the
session's publisher expects it as the last event of its first publish, and
so on (producer/publisher.py), which keeps the session to one writer.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from agentcast.codec import json_decoder
from agentcast.events import TERMINAL_TYPES, EventData
from agentcast.subjects import EVENTS_STREAM, session_type_filter
from producer.head import NO_EVENT, WRONG_LAST_SEQUENCE, expect_after, last_event
from producer.stamp import stamp

logger = logging.getLogger(__name__)


class SessionHead(NamedTuple):
    """What the stream says about a session before a new run."""

    next_seq: int
    next_run: int
    stream_seq: int
    """Stream sequence of the session's last event; 0 when it has none."""
    active: bool
    """Its last event is not a run's closing event: a run is (or was left) open."""


class Claimed(NamedTuple):
    """The run's first event, as stored."""

    seq: int
    stream_seq: int


class SessionBusy(Exception):
    def __init__(self, session: str) -> None:
        super().__init__(f"session {session} has a run in progress")
        self.session = session


async def read_head(js: JetStreamContext, session: str) -> SessionHead:
    last = await last_event(js, session)
    if last is NO_EVENT:
        return SessionHead(next_seq=1, next_run=1, stream_seq=0, active=False)
    if not last.seq:
        raise msgspec.DecodeError(f"session {session}: its last event does not decode")
    return SessionHead(
        next_seq=last.seq + 1,
        next_run=last.run + (1 if last.type in TERMINAL_TYPES else 0),
        stream_seq=last.stream_seq,
        active=last.type not in TERMINAL_TYPES,
    )


async def claude_session_of(js: JetStreamContext, session: str) -> str | None:
    """The Claude Code session id of the session's latest run, for resuming it."""
    try:
        last = await js.get_last_msg(
            EVENTS_STREAM, session_type_filter(session, "run.started"), direct=True
        )
    except NotFoundError:
        return None
    data = json_decoder.decode(last.data or b"{}").get("data") or {}
    value = data.get("claude_session_id")
    return value if isinstance(value, str) else None


async def claim(
    js: JetStreamContext,
    session: str,
    head: SessionHead,
    first_event: EventData,
    *,
    max_msg_size: int,
) -> Claimed:
    """Publish the run's first event if nobody else did since `head`; returns where it is.

    Raises SessionBusy when another run got there first or is still open.
    """
    if head.active:
        raise SessionBusy(session)
    item = stamp(
        first_event,
        session=session,
        seq=head.next_seq,
        run=head.next_run,
        max_msg_size=max_msg_size,
    )
    headers = expect_after(item.headers, session, head.stream_seq)
    try:
        ack = await js.publish(item.subject, item.payload, headers=headers)
    except APIError as exc:
        if exc.err_code == WRONG_LAST_SEQUENCE:
            raise SessionBusy(session) from exc
        raise
    return Claimed(head.next_seq, ack.seq)
