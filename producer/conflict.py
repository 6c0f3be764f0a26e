"""Closing a run after another writer got into its session, if the session's head allows.

A publisher that lost the session (WriterConflict) must not go on writing,
but its run must not stay open either. The run's closing event is published
only if the session's last event still belongs to this run and is not a
closing one (a worker that took the session over closes the run itself, and
then it is that worker's session): then `run.failed` goes after the head,
with a seq no stored event of the session has since this publisher's last,
so the stream never holds two events with one seq.
"""

from __future__ import annotations

import logging

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import APIError

from agentcast.errors import WriterConflict
from agentcast.events import TERMINAL_TYPES, type_of
from producer.head import WRONG_LAST_SEQUENCE, events_after, expect_after, last_event
from producer.stamp import Outgoing, stamp

logger = logging.getLogger(__name__)

_ATTEMPTS = 3
_SCAN_LIMIT = 1_000


async def close_after_conflict(
    js: JetStreamContext, conflict: WriterConflict, item: Outgoing, *, max_msg_size: int
) -> bool:
    """Publish `item` (the run's closing event) after the head, re-stamped; True if stored."""
    session, run = conflict.session, item.event.run
    for _ in range(_ATTEMPTS):
        try:
            head = await last_event(js, session)
            if head.run != run or head.type in TERMINAL_TYPES:
                logger.error(
                    "session %s: run %d left to the other writer: the session's last event is "
                    "run %d %s (seq %d)",
                    session,
                    run,
                    head.run,
                    head.type or "?",
                    head.seq,
                )
                return False
            foreign = await events_after(js, session, conflict.expected, _SCAN_LIMIT)
            if foreign is None:
                logger.error("session %s: too many foreign events to close run %d", session, run)
                return False
            taken = {e.seq for e in foreign}
            seq = conflict.seq
            while seq in taken:
                seq += 1
            closing = stamp(
                item.event.data,
                session=session,
                seq=seq,
                run=run,
                max_msg_size=max_msg_size,
                parent_tool_use_id=item.event.parent_tool_use_id,
            )
            ack = await js.publish(
                closing.subject,
                closing.payload,
                headers=expect_after(closing.headers, session, head.stream_seq),
            )
        except APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                continue  # the other writer wrote meanwhile: look again
            logger.error("session %s: closing run %d failed: %r", session, run, exc)
            return False
        except (NatsError, OSError, TimeoutError) as exc:
            logger.error("session %s: closing run %d failed: %r", session, run, exc)
            return False
        if ack.duplicate:
            logger.error("session %s: closing event %s was a duplicate", session, closing.event.id)
            return False
        logger.error(
            "session %s: run %d closed with %s at seq %d after the writer conflict",
            session,
            run,
            type_of(item.event),
            seq,
        )
        return True
    return False
