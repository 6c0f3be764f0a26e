"""An event ready for JetStream: envelope, subject, bytes and headers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from agentcast.envelope import envelope
from agentcast.events import Event, EventData, type_of
from agentcast.subjects import event_subject
from producer.truncate import fit_event


@dataclass(slots=True)
class Outgoing:
    """An event ready for JetStream: envelope, subject, bytes and headers."""

    event: Event
    subject: str
    payload: bytes
    headers: dict[str, str]
    queued_at: float = field(default_factory=time.monotonic)
    first_try: float = 0.0
    acked_at: float = 0.0
    stream_seq: int = 0
    """Where JetStream stored it (from its ack); 0 until then."""


def stamp(
    data: EventData,
    *,
    session: str,
    seq: int,
    run: int,
    max_msg_size: int,
    parent_tool_use_id: str | None = None,
    subject_prefix: str = "",
) -> Outgoing:
    """Wrap event data in its envelope and encode it under the size limit.

    `subject_prefix` is `event_subject(session, "")`, passed by callers that
    stamp many events of one session so the id is validated once.

    The envelope and its id come from agentcast/envelope.py.
    """
    subject_prefix = subject_prefix or event_subject(session, "")
    event = envelope(data, session=session, run=run, seq=seq, parent_tool_use_id=parent_tool_use_id)
    event, payload = fit_event(event, max_msg_size)
    # Nats-Msg-Id only: every header costs each publish and each consumer a parse.
    headers = {"Nats-Msg-Id": event.id}
    return Outgoing(event, f"{subject_prefix}{type_of(event)}", payload, headers)
