"""`GET /v1/progress`: live progress snapshots over SSE, for dashboards.

A client first gets the current snapshot of every session it may see (from
the KV bucket `agentcast_sessions`), then an `event: synced` marker, then each
new snapshot the metrics consumer publishes on `agentcast.progress.<session>`.

One core NATS subscription per process (`ProgressFeed`) is shared by every
client and exists while at least one client is connected. Hand-over from the
KV pass to live without loss or regression: a client attaches before it reads
KV; live snapshots that arrive meanwhile are held (the latest per session,
bounded) and sent afterwards only when newer (`updated_at`) than what KV gave.
A live client that has more than `client_buffer_bytes` unsent is told
`lagged` and disconnected; on reconnect it simply gets the current snapshots
again. Snapshots carry no cursor: they are state, not history.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Final

import msgspec
from fastapi import APIRouter, Query, Request
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js.kv import KeyValue
from starlette.responses import Response
from starlette.types import Receive

from agentcast.codec import encode
from agentcast.subjects import PROGRESS_PREFIX
from gateway.auth import ReadClaims
from gateway.feed import SessionMatch
from gateway.frames import chunk, sse_event
from gateway.params import parse_glob
from gateway.sink import Sink
from gateway.sse import EventStream

if TYPE_CHECKING:
    from gateway.app import Gateway

logger = logging.getLogger(__name__)
router = APIRouter(tags=["streams"])

PROGRESS_ALL: Final = PROGRESS_PREFIX + ".>"
MAX_HELD: Final = 10_000
"""Sessions whose live snapshot a client may hold while it reads KV; beyond: lagged."""
_BATCH: Final = 64
"""Initial snapshots written per transport write."""
_PREFIX_LEN: Final = len(PROGRESS_PREFIX) + 1
_STATE_KEY: Final = "progress_feed"


class _Stamp(msgspec.Struct):
    updated_at: int = 0


_stamp_decoder: Final = msgspec.json.Decoder(_Stamp)


def progress_message(snapshot: bytes) -> bytes:
    """One snapshot as an SSE message (`event: progress`), in one HTTP chunk."""
    return chunk(sse_event(None, "progress", snapshot))


class ProgressClient:
    """One SSE client: held snapshots until its KV pass is done, then written live."""

    __slots__ = ("held", "live", "match", "sink")

    def __init__(self, sink: Sink, match: SessionMatch) -> None:
        self.sink = sink
        self.match = match
        self.held: dict[str, tuple[int, bytes]] = {}
        self.live = False

    def offer(self, session: str, updated_at: int, message: bytes) -> None:
        sink = self.sink
        if sink.reason is not None:
            return
        if self.live:
            self.offer_live(message)
        else:
            self.held[session] = (updated_at, message)
            if len(self.held) > MAX_HELD:
                sink.finish("lagged")

    def offer_live(self, message: bytes) -> None:
        if self.sink.buffered() > self.sink.limit:
            self.sink.finish("lagged")
        elif self.sink.reason is None:
            self.sink.write(message)

    def go_live(self, sent: dict[str, int]) -> None:
        """Write the held snapshots newer than those sent from KV, then write live ones."""
        for session, (updated_at, message) in self.held.items():
            if updated_at > sent.get(session, -1):
                self.offer_live(message)
        self.held.clear()
        self.live = True


class ProgressFeed:
    """The process's one subscription to `agentcast.progress.>`, shared by its clients."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.clients: set[ProgressClient] = set()
        self._snapshot: tuple[ProgressClient, ...] = ()
        self._sub: NatsSubscription | None = None
        self._lock = asyncio.Lock()

    async def attach(self, client: ProgressClient) -> None:
        async with self._lock:
            if self._sub is None:
                self._sub = await self.nc.subscribe(PROGRESS_ALL, cb=self._on_msg)
            self.clients.add(client)
            self._snapshot = tuple(self.clients)

    async def detach(self, client: ProgressClient) -> None:
        async with self._lock:
            self.clients.discard(client)
            self._snapshot = tuple(self.clients)
            if self.clients or self._sub is None:
                return
            sub, self._sub = self._sub, None
            try:
                await sub.unsubscribe()
            except Exception as exc:  # noqa: BLE001 - the connection may be closing
                logger.debug("unsubscribe %s: %r", PROGRESS_ALL, exc)

    async def _on_msg(self, msg: Msg) -> None:
        clients = self._snapshot
        if not clients:
            return
        session = msg.subject[_PREFIX_LEN:]
        try:
            updated_at = _stamp_decoder.decode(msg.data).updated_at
        except msgspec.DecodeError:
            logger.warning("skipping a malformed progress snapshot on %s", msg.subject)
            return
        message = progress_message(msg.data)
        for client in clients:
            if client.match(session):
                client.offer(session, updated_at, message)


def feed_of(request: Request, gw: Gateway) -> ProgressFeed:
    """The app's ProgressFeed, made on first use (it lives on the lifespan's connection)."""
    feed: ProgressFeed | None = getattr(request.app.state, _STATE_KEY, None)
    if feed is None or feed.nc is not gw.nc:
        feed = ProgressFeed(gw.nc)
        setattr(request.app.state, _STATE_KEY, feed)
    return feed


@router.get(
    "/v1/progress",
    summary="Stream progress snapshots of the sessions matching a glob (SSE, scope: read)",
    response_class=Response,
    response_model=None,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": (
                "`event: progress` / `data: <snapshot JSON>` for every current snapshot, "
                'then `event: synced` / `data: {"sessions": N}`, then each live snapshot. '
                "`event: lagged` before the server drops a client that fell behind."
            ),
        }
    },
)
async def progress(
    request: Request,
    claims: ReadClaims,
    sessions: Annotated[str | None, Query(description="session glob, e.g. team_*")] = None,
) -> EventStream:
    gw: Gateway = request.app.state.gateway
    glob = parse_glob(sessions, default="*")
    return ProgressStream(gw, feed_of(request, gw), SessionMatch(glob, claims.sessions))


class ProgressStream(EventStream):
    """The SSE response: EventStream's connection handling, with snapshots as the content."""

    def __init__(self, gw: Gateway, feed: ProgressFeed, match: SessionMatch) -> None:
        super().__init__(gw, "", "progress", "", 0, None, None)
        self.feed = feed
        self.match = match

    async def _stream(self, sink: Sink, receive: Receive) -> None:
        client = ProgressClient(sink, self.match)
        await self.feed.attach(client)

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            sink.finish("disconnected")

        watcher = asyncio.create_task(watch())
        try:
            await self._send(client)  # returns once the sink is finished, for any reason
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await self.feed.detach(client)

    async def _send(self, client: ProgressClient) -> None:
        sink = client.sink
        sent: dict[str, int] = {}
        batch: list[bytes] = []
        try:
            async for session, value in _current(self.gw.kv, self.match):
                try:
                    sent[session] = _stamp_decoder.decode(value).updated_at
                except msgspec.DecodeError:
                    continue
                batch.append(progress_message(value))
                if len(batch) >= _BATCH:
                    if not await sink.push(b"".join(batch), 0):
                        return
                    batch.clear()
            batch.append(chunk(sse_event(None, "synced", encode({"sessions": len(sent)}))))
            if await sink.push(b"".join(batch), 0):
                client.go_live(sent)
        except Exception:  # the client is told to retry; the gateway goes on
            logger.exception("progress snapshots failed")
            sink.finish("error")
        await sink.done.wait()


async def _current(kv: KeyValue, match: SessionMatch) -> AsyncIterator[tuple[str, bytes]]:
    """The latest snapshot of every session in KV that `match` allows."""
    watcher = await kv.watchall(ignore_deletes=True)
    try:
        async for entry in watcher:
            if entry is None:
                return
            if entry.value and match(entry.key):
                yield entry.key, entry.value
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
