"""NATS connection with a reconnect policy, and idempotent JetStream setup.

Every role calls `connect()` then `ensure_streams()`: whichever starts first
creates AGENTCAST_EVENTS, AGENTCAST_RUNS and the sessions KV bucket; the others
find them in place (an existing stream's config is updated to the settings).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RePublish,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError
from nats.js.kv import KeyValue

from agentcast.settings import Settings
from agentcast.subjects import (
    EVENTS_ALL,
    EVENTS_STREAM,
    LIVE_ALL,
    RUNS_STREAM,
    RUNS_SUBMIT,
    SESSIONS_BUCKET,
)

logger = logging.getLogger(__name__)

# A request for a run is small; the prompt limit is enforced before publish.
_RUNS_MAX_MSG_SIZE = 1024 * 1024
_DRAIN_TIMEOUT_S = 5.0


async def connect(
    url: str,
    name: str,
    *,
    connect_timeout: float = 5.0,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
    on_error: Callable[[Exception], Awaitable[None]] | None = None,
) -> Client:
    """Connect to NATS, reconnecting forever with a short wait.

    Outages are expected (restarts, deploys): the roles ride them out. The
    first connection must succeed within `connect_timeout`, so a wrong URL is
    reported at once rather than retried silently. `on_reconnect` and
    `on_error` let a role react, e.g. refill what core subscriptions missed.
    """

    async def _on_disconnect() -> None:
        logger.warning("NATS disconnected (%s)", name)

    async def _on_reconnect() -> None:
        logger.info("NATS reconnected (%s)", name)
        if on_reconnect is not None:
            await on_reconnect()

    async def _on_error(exc: Exception) -> None:
        logger.debug("NATS error (%s): %r", name, exc)
        if on_error is not None:
            await on_error(exc)

    return await nats.connect(
        servers=[url],
        name=name,
        connect_timeout=max(1, int(connect_timeout)),
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.25,
        ping_interval=5,
        max_outstanding_pings=3,
        disconnected_cb=_on_disconnect,
        reconnected_cb=_on_reconnect,
        error_cb=_on_error,
    )


def events_stream_config(settings: Settings) -> StreamConfig:
    return StreamConfig(
        name=EVENTS_STREAM,
        description="agentcast events, one subject per session and type",
        subjects=[EVENTS_ALL],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=settings.events_max_age_s,
        max_msg_size=settings.max_msg_size,
        duplicate_window=settings.duplicate_window_s,
        allow_direct=True,
        # Every stored event is re-published on agentcast.live.<session>.<type>
        # with its stream sequence in the Nats-Sequence header: live readers
        # get cursors from a plain core subscription, no consumer per session.
        republish=RePublish(src=EVENTS_ALL, dest=LIVE_ALL),
    )


def runs_stream_config(settings: Settings) -> StreamConfig:
    return StreamConfig(
        name=RUNS_STREAM,
        description="agentcast run requests, a work queue taken by workers",
        subjects=[RUNS_SUBMIT],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        max_age=settings.runs_max_age_s,
        max_msg_size=_RUNS_MAX_MSG_SIZE,
        duplicate_window=settings.duplicate_window_s,
    )


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    assert config.name is not None
    try:
        await js.stream_info(config.name)
    except NotFoundError:
        try:
            await js.add_stream(config)
            logger.info("Created stream %s", config.name)
            return
        except BadRequestError:
            # Another role created it between our lookup and our create.
            pass
    await js.update_stream(config)


async def ensure_streams(js: JetStreamContext, settings: Settings) -> KeyValue:
    """Create or update the streams and the sessions bucket; return the bucket."""
    await _ensure_stream(js, events_stream_config(settings))
    await _ensure_stream(js, runs_stream_config(settings))
    return await sessions_bucket(js)


async def sessions_bucket(js: JetStreamContext) -> KeyValue:
    try:
        return await js.key_value(SESSIONS_BUCKET)
    except Exception:  # nats-py raises BucketNotFoundError or NotFoundError by version
        return await js.create_key_value(
            KeyValueConfig(
                bucket=SESSIONS_BUCKET,
                description="latest progress snapshot per session",
                history=1,
                storage=StorageType.FILE,
            )
        )


async def disconnect(nc: Client, *, drain: bool = False) -> None:
    """Close (or drain, then close) a connection, even when the server is gone.

    nats-py raises ConnectionResetError from close() if the socket already
    died; at shutdown that is not an error worth surfacing.
    """
    try:
        if drain and nc.is_connected:
            # Bounded: a pull subscription's pending fetch can keep drain waiting.
            await asyncio.wait_for(nc.drain(), _DRAIN_TIMEOUT_S)
    except (ConnectionError, OSError, TimeoutError) as exc:
        logger.debug("NATS drain: %r", exc)
    try:
        if not nc.is_closed:
            await nc.close()
    except (ConnectionError, OSError, TimeoutError) as exc:
        logger.debug("NATS close: %r", exc)
