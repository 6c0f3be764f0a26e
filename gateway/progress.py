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

import logging
from collections.abc import AsyncIterator
from typing import Final

import msgspec
from fastapi import APIRouter
from nats.js.kv import KeyValue
from starlette.responses import Response
from starlette.types import Receive

from agentcast.codec import encode, stamp_decoder
from gateway.deps import ReadClaims, State
from gateway.feed import SessionMatch
from gateway.frames import sse_event
from gateway.hub import Subscriber
from gateway.openapi import READ, SessionsQuery, answers, stream
from gateway.params import parse_glob
from gateway.progress_feed import ProgressClient, ProgressFeed, progress_message
from gateway.sse import SseResponse

logger = logging.getLogger(__name__)
router = APIRouter(tags=["streams"])

_BATCH: Final = 64
"""Initial snapshots written per transport write."""


@router.get(
    "/v1/progress",
    summary="Stream progress snapshots of the sessions matching a glob (SSE, scope: read)",
    response_class=Response,
    response_model=None,
    responses=answers(
        *READ,
        429,
        ok=stream(
            "`event: progress` / `data: <snapshot JSON>` for every current snapshot, "
            'then `event: synced` / `data: {"sessions": N}`, then each live snapshot. '
            "`event: lagged` before the server drops a client that fell behind."
        ),
    ),
)
async def progress(
    gw: State,
    claims: ReadClaims,
    sessions: SessionsQuery = None,
) -> SseResponse:
    glob = parse_glob(sessions, default="*")
    return SseResponse(
        gw, claims.jti, ProgressContent(gw.kv, gw.progress, SessionMatch(glob, claims.sessions))
    )


class ProgressContent:
    """The current snapshots from KV, `synced`, then live ones."""

    def __init__(self, kv: KeyValue, feed: ProgressFeed, match: SessionMatch) -> None:
        self.kv = kv
        self.feed = feed
        self.match = match

    async def stream(self, client: Subscriber, receive: Receive) -> None:
        sink = client.sink
        progress = ProgressClient(sink, self.match)
        feed = self.feed
        await feed.attach(progress)
        watch = sink.output.watch(receive, sink.lost)
        try:
            await self._send(progress)  # returns once the sink is finished, for any reason
        finally:
            watch.stop()
            await feed.detach(progress)

    async def _send(self, client: ProgressClient) -> None:
        sink = client.sink
        sent: dict[str, int] = {}
        batch: list[bytes] = []
        try:
            async for session, value in _current(self.kv, self.match):
                try:
                    sent[session] = stamp_decoder.decode(value).updated_at
                except msgspec.DecodeError:
                    continue
                batch.append(progress_message(value))
                if len(batch) >= _BATCH:
                    if not await sink.push_parts([sink.output.message(b"".join(batch))], 0):
                        return
                    batch.clear()
            batch.append(sse_event(None, "synced", encode({"sessions": len(sent)})))
            if await sink.push_parts([sink.output.message(b"".join(batch))], 0):
                client.go_live(sent)
        except Exception:  # the client is told to retry; the gateway goes on
            logger.exception("progress snapshots failed")
            sink.finish("error")
        await sink.wait()


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
