"""Publishing an event with its headers pre-encoded: the producer's one seam over nats-py's private parts.

nats-py's `Client.publish(headers=...)` checks and encodes every header on
every call (a regex and three str operations each): a quarter of the
producer's time per event once each event carries the expected-sequence
pair (bench/README.md, producer). An event's headers are always the same
three names with values agentcast made itself (a `<session>.<seq>` id, an
integer, a validated subject filter), so here they are written as bytes
and the command goes to the client's write path directly.

The private parts used are behind the seam, agentcast/_internals.py
(`send_hpub`). With `ENABLED = False`, or if this nats-py lacks them, the
public `Client.publish` is used: the same bytes on the wire
(tests/test_publisher.py runs both paths).
"""

from __future__ import annotations

from typing import Final

from nats.aio.client import Client

from agentcast._internals import can_send_hpub, send_hpub
from producer.head import EXPECTED_LAST, EXPECTED_SUBJECT

ENABLED = True
"""Off: every publish takes nats-py's public path (tests turn it off)."""

_MSG_ID: Final = b"NATS/1.0\r\nNats-Msg-Id: "
_LAST: Final = f"\r\n{EXPECTED_LAST}: ".encode()
_SUBJECT: Final = f"\r\n{EXPECTED_SUBJECT}: ".encode()


async def publish_expecting(
    nc: Client,
    subject: str,
    payload: bytes,
    *,
    reply: str,
    msg_id: str,
    expected: int,
    session_filter: str,
) -> None:
    """Publish with Nats-Msg-Id and the expected last sequence over `session_filter`."""
    if not ENABLED or len(payload) > nc.max_payload or not can_send_hpub(nc):
        await nc.publish(
            subject,
            payload,
            reply=reply,
            headers={
                "Nats-Msg-Id": msg_id,
                EXPECTED_LAST: str(expected),
                EXPECTED_SUBJECT: session_filter,
            },
        )
        return
    header = b"".join(
        (
            _MSG_ID,
            msg_id.encode(),
            _LAST,
            str(expected).encode(),
            _SUBJECT,
            session_filter.encode(),
            b"\r\n\r\n",
        )
    )
    await send_hpub(nc, subject, reply, header, payload)
