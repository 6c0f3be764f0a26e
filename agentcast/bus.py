"""NATS connection with a reconnect policy, and idempotent JetStream setup.

Every role calls `connect()` then `ensure_streams()`: whichever starts first
creates AGENTCAST_EVENTS, AGENTCAST_RUNS and the sessions KV bucket; the others
find them in place (an existing stream's config is updated to the settings).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import nats
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RePublish,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import (
    APIError,
    BadRequestError,
    BucketNotFoundError,
    NotFoundError,
    ServiceUnavailableError,
)
from nats.js.kv import KeyValue

from agentcast import replicas
from agentcast.bus_auth import inbox_prefix
from agentcast.settings import Settings
from agentcast.subjects import (
    APP_ALL,
    APP_LIVE_ALL,
    APP_META_ALL,
    APP_STREAM,
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


def servers(settings: Settings) -> list[str]:
    """The server list of `settings.nats_url`, without credentials."""
    return [_strip_userinfo(url) for url in _urls(settings)]


def credentials(settings: Settings) -> tuple[str, str] | None:
    """(user, password): the settings' own, else the first URL that carries some."""
    if settings.nats_user:
        return settings.nats_user, settings.nats_password
    for url in _urls(settings):
        parsed = urlsplit(url)
        if parsed.username:
            return unquote(parsed.username), unquote(parsed.password or "")
    return None


def _urls(settings: Settings) -> list[str]:
    urls = [u.strip() for u in (settings.nats_url or "").split(",") if u.strip()]
    if not urls:
        raise ValueError("no NATS server: settings.nats_url is empty")
    return urls


def _strip_userinfo(url: str) -> str:
    parsed = urlsplit(url if "://" in url else f"nats://{url}")
    host = parsed.netloc.rpartition("@")[2]
    return urlunsplit((parsed.scheme, host, parsed.path, parsed.query, parsed.fragment))


async def connect(
    settings: Settings,
    name: str,
    *,
    connect_timeout: float = 5.0,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
    on_error: Callable[[Exception], Awaitable[None]] | None = None,
) -> Client:
    """Connect to the servers of `settings.nats_url`, failing over between them forever.

    Outages are expected (restarts, deploys, a lost cluster node): the roles
    ride them out. The first connection must succeed within `connect_timeout`,
    so a wrong URL is reported at once rather than retried silently.
    `on_reconnect` and `on_error` let a role react, e.g. refill what core
    subscriptions missed. The connection's inbox prefix is its user's
    (`_INBOX_<user>`): that is all its permissions let it subscribe to.
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

    creds = credentials(settings)
    user, password = creds if creds else (None, None)
    return await nats.connect(
        # Randomized (nats-py's default): processes spread over the nodes of a
        # cluster instead of all piling onto the first one listed.
        servers=servers(settings),
        name=name,
        user=user,
        password=password,
        inbox_prefix=inbox_prefix(user),
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
    # Every stored event is re-published on agentcast.live.<session>.<type>
    # with its stream sequence in the Nats-Sequence header: live readers
    # get cursors from a plain core subscription, no consumer per session.
    return _retained_stream(
        settings, EVENTS_STREAM, "agentcast events, one subject per session and type",
        [EVENTS_ALL], RePublish(src=EVENTS_ALL, dest=LIVE_ALL),
    )  # fmt: skip


def runs_stream_config(settings: Settings) -> StreamConfig:
    return StreamConfig(
        name=RUNS_STREAM,
        description="agentcast run requests, a work queue taken by workers",
        subjects=[RUNS_SUBMIT],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        # Bounded for every publisher, the gateway or a client straight on NATS: past it
        # JetStream refuses the request (the gateway answers 503 queue_full).
        max_msgs=settings.max_queued_runs,
        discard=DiscardPolicy.NEW,
        max_age=settings.runs_max_age_s,
        max_msg_size=_RUNS_MAX_MSG_SIZE,
        duplicate_window=settings.duplicate_window_s,
    )


def app_stream_config(settings: Settings) -> StreamConfig:
    """Application streams (gateway/durable/): stored, retained and republished like events."""
    return _retained_stream(
        settings, APP_STREAM, "agentcast application streams (Durable Streams facade)",
        [APP_ALL, APP_META_ALL], RePublish(src=APP_ALL, dest=APP_LIVE_ALL),
    )  # fmt: skip


def _retained_stream(
    settings: Settings, name: str, description: str, subjects: list[str], republish: RePublish
) -> StreamConfig:
    return StreamConfig(
        name=name,
        description=description,
        subjects=subjects,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=settings.events_max_age_s,
        max_msg_size=settings.max_msg_size,
        duplicate_window=settings.duplicate_window_s,
        allow_direct=True,
        republish=republish,
    )


def _compared(config: StreamConfig) -> dict[str, object]:
    """The fields `ensure_streams` sets, as the server reports them back."""
    republish = config.republish
    return {
        "subjects": sorted(config.subjects or []),
        "retention": config.retention,
        "storage": config.storage,
        "discard": config.discard or DiscardPolicy.OLD,
        "max_age": round(config.max_age or 0.0, 3),
        "max_msgs": config.max_msgs if config.max_msgs and config.max_msgs > 0 else -1,
        "max_msg_size": config.max_msg_size or -1,
        "duplicate_window": round(config.duplicate_window or 0.0, 3),
        "allow_direct": bool(config.allow_direct),
        "republish": (republish.src, republish.dest) if republish else None,
    }


def may_update(settings: Settings) -> bool:
    """Only admin (or a server without users) may update streams: see agentcast/bus_auth.py."""
    creds = credentials(settings)
    return creds is None or creds[0] == "admin"


async def _ensure_stream(js: JetStreamContext, config: StreamConfig, settings: Settings) -> None:
    assert config.name is not None
    config.num_replicas = settings.replicas
    try:
        info = await js.stream_info(config.name)
    except NotFoundError:
        try:
            await js.add_stream(config)
            logger.info("Created stream %s (%d replicas)", config.name, settings.replicas)
            replicas.record(config.name, settings.replicas, settings.replicas)
            return
        except BadRequestError:
            # Another role created it between our lookup and our create.
            info = await js.stream_info(config.name)
    await _reconcile(js, config, info.config, settings)


async def _reconcile(
    js: JetStreamContext, want: StreamConfig, have: StreamConfig, settings: Settings
) -> None:
    """Bring an existing stream to the settings if allowed; replicas are only ever raised."""
    assert want.name is not None
    have_replicas = have.num_replicas or 1
    want.num_replicas = max(settings.replicas, have_replicas)
    differs = _compared(want) != _compared(have) or want.num_replicas != have_replicas
    if differs and may_update(settings):
        await js.update_stream(want)
        logger.info("Updated stream %s to the settings", want.name)
        have_replicas = want.num_replicas
    elif differs:
        logger.warning(
            "stream %s differs from this process's settings; left as is (only admin updates "
            "streams): %s",
            want.name,
            {k: v for k, v in _compared(want).items() if _compared(have).get(k) != v},
        )
    replicas.record(want.name, have_replicas, settings.replicas)


async def ensure_streams(js: JetStreamContext, settings: Settings) -> KeyValue:
    """Create (or, as admin, update) the streams and the sessions bucket; return the bucket."""

    async def ensure() -> KeyValue:
        await _ensure_stream(js, events_stream_config(settings), settings)
        await _ensure_stream(js, runs_stream_config(settings), settings)
        return await sessions_bucket(js, settings.replicas)

    return await _patiently(ensure, "the streams")


async def ensure_app_stream(js: JetStreamContext, settings: Settings) -> None:
    """Create (or, as admin, update) AGENTCAST_APP: only the gateway, which serves it, needs it."""
    await _patiently(
        lambda: _ensure_stream(js, app_stream_config(settings), settings), "AGENTCAST_APP"
    )


T = TypeVar("T")
ENSURE_ATTEMPTS: Final = 6
"""JetStream API timeouts ridden out at startup: about a minute with the 5 s API timeout."""


async def _patiently(ensure: Callable[[], Awaitable[T]], what: str) -> T:
    """`ensure()`, asked again while JetStream does not answer in time. A role starting
    beside a cluster that is still electing its leaders, or under load, or a server that
    stalls, waits for it rather than exiting: every step of `ensure()` is idempotent."""
    for attempt in range(1, ENSURE_ATTEMPTS):
        try:
            return await ensure()
        except (NatsTimeoutError, ServiceUnavailableError) as exc:
            logger.warning("JetStream did not answer for %s (%r); asking again", what, exc)
            await asyncio.sleep(min(0.5 * attempt, 2.0))
    return await ensure()  # the last attempt: its error is the role's


async def sessions_bucket(js: JetStreamContext, replicas_wanted: int = 1) -> KeyValue:
    return await key_value(
        js, SESSIONS_BUCKET, "latest progress snapshot per session", replicas_wanted
    )


async def key_value(
    js: JetStreamContext, name: str, description: str, replicas_wanted: int, ttl_s: float = 0.0
) -> KeyValue:
    """The bucket `name`, created (history 1, file storage, `ttl_s` if set) if missing."""
    try:
        kv = await js.key_value(name)
    except (BucketNotFoundError, NotFoundError):  # which one depends on the nats-py version
        config = KeyValueConfig(
            bucket=name,
            description=description,
            history=1,
            ttl=ttl_s or None,
            storage=StorageType.FILE,
            replicas=replicas_wanted,
        )
        try:
            kv = await js.create_key_value(config)
        except APIError:  # another process created it first (its config rules)
            kv = await js.key_value(name)
    status = await kv.status()
    replicas.record(f"KV_{name}", status.stream_info.config.num_replicas or 1, replicas_wanted)
    return kv


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
