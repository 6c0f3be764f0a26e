"""The async client of a gateway: typed event streams that resume by themselves, and runs.

async with Client("http://127.0.0.1:8000", token) as client:
    queued = await client.run("[scenario:quick] hi")
    async for event in client.events(queued.session):
        print(event)
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import AsyncGenerator, Sequence
from types import TracebackType
from typing import Any, Final, Self

import httpx
import msgspec

from agentcast.client.errors import GatewayUnreachable, error_of
from agentcast.client.stream import StreamStats, resumable
from agentcast.codec import json_decoder_of
from agentcast.events import AnyEvent, Event
from agentcast.progress import ProgressSnapshot
from agentcast.sessions import validate_session_id

READ_TIMEOUT_S: Final = 60.0
"""A stream silent this long is presumed dead (the gateway sends a heartbeat every 15 s)."""


class QueuedRun(msgspec.Struct, frozen=True, kw_only=True):
    """A run the gateway accepted: its session, and the run number it predicts."""

    session: str
    run: int
    events_url: str | None = None
    ws_url: str | None = None


class CancelReply(msgspec.Struct, frozen=True, kw_only=True):
    session: str
    ok: bool
    run: int | None = None


class _Sessions(msgspec.Struct, frozen=True):
    sessions: list[ProgressSnapshot]


_QUEUED: Final = json_decoder_of(QueuedRun)
_CANCEL: Final = json_decoder_of(CancelReply)
_SESSIONS: Final = json_decoder_of(_Sessions)
_SNAPSHOT: Final = json_decoder_of(ProgressSnapshot)


class Client:
    """A gateway at `gateway_url`, called with a bearer `token`.

    Reading needs scope `read`; `run`, `cancel` and `message` need scope `run`.
    `transport` lets a caller tune the connection (socket options, proxies).
    """

    def __init__(
        self,
        gateway_url: str,
        token: str,
        *,
        read_timeout_s: float = READ_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.stats = StreamStats()
        # Streams a caller abandoned mid-iteration are closed with the client,
        # on this loop, not later by the garbage collector.
        self._streams: weakref.WeakSet[AsyncGenerator[Event | AnyEvent]] = weakref.WeakSet()
        self._http = httpx.AsyncClient(
            base_url=self.gateway_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(10.0, read=read_timeout_s),
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        await self.aclose()

    async def aclose(self) -> None:
        for stream in list(self._streams):
            # One being iterated by another task right now fails on its next read instead.
            with contextlib.suppress(RuntimeError):
                await stream.aclose()
        await self._http.aclose()

    # -- reading -------------------------------------------------------------------

    def events(
        self, session: str, *, from_: str = "start", types: Sequence[str] | None = None
    ) -> AsyncGenerator[Event | AnyEvent]:
        """The session's events from `from_` (start | now | a cursor), forever, in seq order.

        Reconnects from the last cursor on any disconnect; raises CursorExpired
        when `from_` is older than retention, AuthError when the token is refused.
        Before the first event there is no cursor yet: a reconnect then asks
        `from_` again, which for "now" means events published during the
        outage are skipped (pass "start" or a cursor where that matters).
        """
        return self._open(f"/v1/sessions/{_id(session)}/events", _types(types), from_)

    def firehose(
        self, sessions: str = "*", *, from_: str = "now", types: Sequence[str] | None = None
    ) -> AsyncGenerator[Event | AnyEvent]:
        """The events of every session matching the glob `sessions`, like `events`."""
        return self._open("/v1/events", {"sessions": sessions, **_types(types)}, from_)

    def _open(
        self, path: str, params: dict[str, str], from_: str
    ) -> AsyncGenerator[Event | AnyEvent]:
        stream = resumable(self._http, path, params, from_, self.stats)
        self._streams.add(stream)
        return stream

    async def sessions(
        self, *, state: str | None = None, limit: int = 100
    ) -> list[ProgressSnapshot]:
        """The progress snapshots of the sessions the token may read, newest first."""
        params: dict[str, str | int] = {"limit": limit}
        if state is not None:
            params["state"] = state
        body = await self._call("GET", "/v1/sessions", params=params)
        sessions: list[ProgressSnapshot] = _SESSIONS.decode(body).sessions
        return sessions

    async def snapshot(self, session: str) -> ProgressSnapshot:
        """The session's latest progress snapshot; NotFound before its first is computed."""
        snapshot: ProgressSnapshot = _SNAPSHOT.decode(
            await self._call("GET", f"/v1/sessions/{_id(session)}")
        )
        return snapshot

    # -- writing -------------------------------------------------------------------

    async def run(
        self, prompt: str, session: str | None = None, options: dict[str, Any] | None = None
    ) -> QueuedRun:
        """Queue a run (a new session unless `session` names one to continue)."""
        body: dict[str, Any] = {"prompt": prompt}
        if session is not None:
            body["session"] = session
        if options is not None:
            body["options"] = options
        queued: QueuedRun = _QUEUED.decode(await self._call("POST", "/v1/runs", json=body))
        return queued

    async def cancel(self, session: str) -> CancelReply:
        """Cancel the session's active run; ClientError `not_running` (409) when none is."""
        reply: CancelReply = _CANCEL.decode(
            await self._call("POST", f"/v1/sessions/{_id(session)}/cancel")
        )
        return reply

    async def message(self, session: str, text: str) -> QueuedRun:
        """A follow-up message: it continues the conversation as the session's next run."""
        body = await self._call(
            "POST", f"/v1/sessions/{_id(session)}/messages", json={"text": text}
        )
        queued: QueuedRun = _QUEUED.decode(body)
        return queued

    async def _call(self, method: str, path: str, **kwargs: Any) -> bytes:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise GatewayUnreachable(self.gateway_url, exc) from exc
        if response.status_code >= 400:
            raise error_of(response)
        return response.content


def _id(session: str) -> str:
    """A session id checked before it goes into a path (InvalidSessionId otherwise)."""
    return validate_session_id(session)


def _types(types: Sequence[str] | None) -> dict[str, str]:
    return {"types": ",".join(types)} if types else {}
