"""The checkpoint witness: a JetStream stream off the archive's disk, replicated with the cluster.

Stream `AGENTCAST_CHECKPOINTS`, one subject per checkpoint log
(`agentcast.checkpoints.<archive id>`, the archiver's durable name), one
message per checkpoint: its signed header (`{"checkpoint": {...}, "sig": ...}`),
never the entries (the header's Merkle root commits to them). The stream
denies deletes and purges, so nobody with the bus (not even admin) takes a
checkpoint back, short of deleting the whole stream. Each publish expects
the subject's last sequence to be the previous checkpoint's, so two writers
cannot fork one log's copy.
"""

from __future__ import annotations

import logging
from typing import Final

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

STREAM: Final = "AGENTCAST_CHECKPOINTS"
SUBJECT_PREFIX: Final = "agentcast.checkpoints"

logger = logging.getLogger(__name__)


def subject(archive_id: str) -> str:
    return f"{SUBJECT_PREFIX}.{archive_id}"


async def ensure_stream(js: JetStreamContext, replicas: int) -> None:
    """Create the witness stream if missing (roles never update streams: agentcast/bus_auth.py)."""
    config = StreamConfig(
        name=STREAM,
        description="agentcast archive checkpoints (signed headers), one subject per archive",
        subjects=[f"{SUBJECT_PREFIX}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.NEW,
        max_msg_size=64 * 1024,
        deny_delete=True,
        deny_purge=True,
        num_replicas=replicas,
    )
    try:
        await js.stream_info(STREAM)
    except NotFoundError:
        try:
            await js.add_stream(config)
            logger.info("Created the checkpoint witness stream %s", STREAM)
        except BadRequestError:
            await js.stream_info(STREAM)  # created meanwhile by another archiver


async def last(js: JetStreamContext, archive_id: str) -> tuple[int, bytes] | None:
    """(stream seq, payload) of the newest witnessed checkpoint of a log, or None."""
    try:
        msg = await js.get_last_msg(STREAM, subject(archive_id))
    except NotFoundError:
        return None
    assert msg.data is not None and msg.seq is not None
    return msg.seq, msg.data


async def publish(js: JetStreamContext, archive_id: str, payload: bytes, after: int) -> int:
    """Append one checkpoint after stream seq `after` (0: the log's first); its stream seq."""
    ack = await js.publish(
        subject(archive_id),
        payload,
        stream=STREAM,
        headers={"Nats-Expected-Last-Subject-Sequence": str(after)},
        # Short: the archive loop waits on it; a checkpoint not witnessed now is retried later.
        timeout=2.0,
    )
    return ack.seq


async def read_all(js: JetStreamContext, archive_id: str) -> list[bytes]:
    """Every witnessed checkpoint of a log, oldest first."""
    found: list[bytes] = []
    seq = 1
    while True:
        try:
            msg = await js.get_msg(STREAM, seq=seq, subject=subject(archive_id), next=True)
        except NotFoundError:
            return found
        assert msg.data is not None and msg.seq is not None
        found.append(msg.data)
        seq = msg.seq + 1


WitnessError: Final = (NatsError, TimeoutError, ConnectionError)
"""What a witness outage raises: the checkpoint stays in the log and is published later."""
