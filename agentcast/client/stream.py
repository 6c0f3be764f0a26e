"""One resumable SSE event stream: reconnects from its last cursor until the caller stops.

Exactly-once rests on the gateway's resume guarantee (SPEC "Guarantees"): the
first request asks `from=<from_>`, every later one sends `Last-Event-ID` with
the cursor of the last event handed to the caller, so nothing is skipped and
nothing comes twice. A stream ends for many reasons that are all worth a
reconnect: the connection dropped, the gateway restarted (it says `retry:`
with jitter), it told us `lagged`, or it answered 5xx / 429. Refusals that a
retry cannot fix (401, 403, 404, 410 `cursor_expired`, other 4xx) are raised
as typed errors.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Final

import httpx
import msgspec
from httpx_sse import aconnect_sse

from agentcast.client.backoff import Backoff
from agentcast.client.errors import error_of
from agentcast.codec import decode_event, decode_loose
from agentcast.events import AnyEvent, Event, type_of

logger = logging.getLogger(__name__)

_RETRYABLE: Final = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass
class StreamStats:
    """What a client's streams went through; shared by every stream of one Client."""

    connects: int = 0
    reconnects: int = 0
    lagged: int = 0


def event_type(event: Event | AnyEvent) -> str:
    """The wire `type` of what a stream yields (a typed event carries it as its class tag)."""
    return event.type if isinstance(event, AnyEvent) else type_of(event)


def decode(raw: bytes) -> Event | AnyEvent:
    """The typed event; an unknown (newer) type or shape comes as AnyEvent, never dropped."""
    try:
        return decode_event(raw)
    except msgspec.ValidationError:
        return decode_loose(raw)


async def resumable(
    http: httpx.AsyncClient,
    path: str,
    params: dict[str, str],
    from_: str,
    stats: StreamStats,
    backoff: Backoff | None = None,
) -> AsyncGenerator[Event | AnyEvent]:
    """Every event of the stream at `path`, from `from_` on, across reconnects."""
    backoff = backoff or Backoff()
    cursor: str | None = None
    while True:
        query = dict(params)
        headers = {}
        if cursor is None:
            query["from"] = from_
        else:
            headers["Last-Event-ID"] = cursor
        hint: float | None = None
        try:
            async with aconnect_sse(http, "GET", path, params=query, headers=headers) as source:
                response = source.response
                if response.status_code != 200:
                    await response.aread()
                    if response.status_code not in _RETRYABLE:
                        raise error_of(response)
                    hint = _retry_after(response)
                    logger.warning("%s answered %d; retrying", path, response.status_code)
                else:
                    stats.connects += 1
                    async for sse in source.aiter_sse():
                        if sse.retry is not None:
                            hint = sse.retry / 1000
                        if sse.event == "lagged":
                            # The gateway dropped us for reading too slowly; catch up at once.
                            stats.lagged += 1
                            hint = None
                            logger.info("%s: lagged at cursor %s; resuming", path, cursor)
                            break
                        if not sse.data:
                            continue  # heartbeat comment or a bare retry hint
                        event = decode(sse.data.encode())
                        cursor = sse.id or cursor
                        backoff.reset()
                        yield event
        except httpx.TransportError as exc:
            logger.info("%s: connection lost (%r); reconnecting from %s", path, exc, cursor)
        stats.reconnects += 1
        await asyncio.sleep(backoff.next(hint))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None
