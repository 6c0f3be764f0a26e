"""Sharing the archive (or metrics) between processes: sessions partitioned by NATS subject mapping.

With `archive_partitions = 1` the archiver reads AGENTCAST_EVENTS itself.
With N > 1, a stream `AGENTCAST_ARCHIVE_P<N>` sources the events under a
subject that carries the session's partition, computed by the server:

    agentcast.evt.<session>.<type...>  ->  agentcast.archive.<p>.<session>.<type...>
    p = {{partition(N,1)}} = fnv32a(<session>) mod N

Archiver i of N reads only `agentcast.archive.<i>.>` with its own durable
consumer, which it owns through a lease: every session belongs to exactly one
partition, so no two processes ever write the same chain. Metrics processes
(`metrics_partitions`) partition the same way, each owning its sessions'
states and snapshots.

Sourced, not mirrored: a mirror would keep the origin's sequences, but the
server makes a mirror of a stream that allows direct gets answer the
origin's direct gets, from its own (transformed) subjects, which breaks the
gateway's reads. A sourced message carries its origin sequence, the cursor,
in its `Nats-Stream-Source` header ("AGENTCAST_EVENTS <seq> ...").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamSource,
    SubjectTransform,
)
from nats.js.errors import BadRequestError, NotFoundError

from agentcast.settings import Settings
from agentcast.subjects import EVENTS_ALL, EVENTS_STREAM

logger = logging.getLogger(__name__)

ARCHIVE_PREFIX: Final = "agentcast.archive"
_FNV_OFFSET: Final = 2166136261
_FNV_PRIME: Final = 16777619


@dataclass(frozen=True)
class Source:
    """Where one archiver process reads: stream, durable consumer, filter, session token."""

    stream: str
    durable: str
    filter_subject: str
    session_token: int
    """Index of the session in the subject's dot-separated tokens."""
    sourced: bool = False
    """The cursor is the origin sequence in the Nats-Stream-Source header, not the stream's own."""


def stream_name(partitions: int) -> str:
    return f"AGENTCAST_ARCHIVE_P{partitions}"


def source_for(partition: int, partitions: int, durable: str = "agentcast-archiver") -> Source:
    if partitions < 1 or not 0 <= partition < partitions:
        raise ValueError(f"partition {partition} of {partitions}: need 0 <= partition < partitions")
    if partitions == 1:
        return Source(EVENTS_STREAM, durable, EVENTS_ALL, 2)
    return Source(
        stream_name(partitions),
        f"{durable}-{partition}of{partitions}",
        f"{ARCHIVE_PREFIX}.{partition}.>",
        3,
        sourced=True,
    )


def stream_config(settings: Settings, partitions: int) -> StreamConfig:
    dest = f"{ARCHIVE_PREFIX}.{{{{partition({partitions},1)}}}}.{{{{wildcard(1)}}}}.>"
    return StreamConfig(
        name=stream_name(partitions),
        description=f"agentcast events by archive partition (of {partitions})",
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=settings.events_max_age_s,
        num_replicas=settings.replicas,
        sources=[
            StreamSource(
                name=EVENTS_STREAM,
                subject_transforms=[SubjectTransform(src="agentcast.evt.*.>", dest=dest)],
            )
        ],
    )


async def ensure_source(
    js: JetStreamContext, settings: Settings, partition: int, partitions: int, durable: str
) -> Source:
    """The source of one process's partition (of the archive, or of metrics), creating its stream.

    Archivers and metrics processes with the same number of partitions read
    the same partitioned stream, each role with its own durable consumers.
    """
    source = source_for(partition, partitions, durable)
    if partitions > 1:
        config = stream_config(settings, partitions)
        try:
            info = await js.stream_info(source.stream)
            if info.config.mirror is not None:
                # An early version made this a mirror (see the module docstring): replace it.
                await js.delete_stream(source.stream)
                raise NotFoundError
        except NotFoundError:
            try:
                await js.add_stream(config)
                logger.info("Created partitioned stream %s", source.stream)
            except BadRequestError:
                pass  # another archiver created it meanwhile
    return source


def partition_of(session: str, partitions: int) -> int:
    """The partition the server's `{{partition(N,1)}}` gives a session (FNV-1a 32, mod N)."""
    h = _FNV_OFFSET
    for byte in session.encode():
        h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return h % partitions
