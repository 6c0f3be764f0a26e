"""Clients that survive faults as a dashboard would: SSE and WebSocket, resuming from their cursor.

Each follows its sessions through the gateways it is given (the next one on
every reconnect), counts what it receives in a Tally, and stops once it has
every event of its sessions (`Goal`, set when the producers are done) or when
cancelled. Reconnects wait a little, with jitter, as the gateway's `retry:` asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import websockets
from httpx_sse import aconnect_sse

from tests.support.chaos import Tally

_RETRY_S = (0.2, 1.0)
_IDLE_S = 1.0
"""How often an idle client looks at its goal (the SSE heartbeat is 1 s in the tests)."""


@dataclass
class Goal:
    """Each session's event count, known once the producers have finished."""

    sent: Mapping[str, int] | None = None

    def done(self, tally: Tally, sessions: list[str]) -> bool:
        sent = self.sent
        return sent is not None and all(tally.distinct(s) >= sent.get(s, 0) for s in sessions)


class SseFollower:
    """One EventSource on one session, resumed with Last-Event-ID on whichever gateway is next."""

    def __init__(
        self, http: httpx.AsyncClient, gateways: Callable[[], list[str]], session: str,
        token: str, name: str, first: int = 0,
    ) -> None:  # fmt: skip
        self.http, self.gateways, self.session, self.token = http, gateways, session, token
        self.tally = Tally(name)
        self.tally.seqs[session] = []
        self.cursor: str | None = None
        self.turn = first
        self.at = ""
        """The gateway of the current (or last) connection."""
        self.connected = asyncio.Event()

    async def run(self, goal: Goal) -> Tally:
        while not goal.done(self.tally, [self.session]):
            urls = self.gateways()
            url = self.at = urls[self.turn % len(urls)]
            self.turn += 1
            headers = {"Authorization": f"Bearer {self.token}"}
            if self.cursor is not None:
                headers["Last-Event-ID"] = self.cursor
            try:
                await _until_goal(
                    self._read(f"{url}/v1/sessions/{self.session}/events", headers, goal),
                    lambda: goal.done(self.tally, [self.session]),
                )
            except (httpx.HTTPError, OSError, ValueError) as exc:
                self.tally.errors += [] if _transient(exc) else [repr(exc)]
            if goal.done(self.tally, [self.session]):
                break
            self.tally.reconnects += 1
            await asyncio.sleep(random.uniform(*_RETRY_S))
        return self.tally

    async def _read(self, url: str, headers: dict[str, str], goal: Goal) -> None:
        async with aconnect_sse(self.http, "GET", url, headers=headers) as source:
            if source.response.status_code != 200:
                await source.response.aread()
                if source.response.status_code not in (429, 503):
                    self.tally.errors.append(
                        f"{source.response.status_code} {source.response.text}"
                    )
                return
            self.connected.set()
            async for sse in source.aiter_sse():
                if sse.data and sse.event != "error":
                    self.tally.add(self.session, json.loads(sse.data)["seq"])
                    self.cursor = sse.id
                elif sse.event == "error":
                    self.tally.errors.append(sse.data)
                if goal.done(self.tally, [self.session]):
                    return


class WsFollower:
    """One WebSocket following several sessions; every reconnect resubscribes from each cursor."""

    def __init__(
        self, gateways: Callable[[], list[str]], sessions: list[str], token: str, name: str,
        first: int = 0,
    ) -> None:  # fmt: skip
        self.gateways, self.sessions, self.token = gateways, sessions, token
        self.tally = Tally(name)
        for session in sessions:
            self.tally.seqs[session] = []
        self.cursors: dict[str, str] = {}
        self.turn = first
        self.at = ""
        """The gateway of the current (or last) connection."""
        self.connected = asyncio.Event()

    async def run(self, goal: Goal) -> Tally:
        while not goal.done(self.tally, self.sessions):
            urls = self.gateways()
            self.at = urls[self.turn % len(urls)]
            self.turn += 1
            try:
                await self._read(
                    f"{self.at.replace('http://', 'ws://')}/v1/ws?token={self.token}", goal
                )
            except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                self.tally.errors += [] if _transient(exc) else [repr(exc)]
            if goal.done(self.tally, self.sessions):
                break
            self.tally.reconnects += 1
            await asyncio.sleep(random.uniform(*_RETRY_S))
        return self.tally

    async def _read(self, url: str, goal: Goal) -> None:
        async with websockets.connect(url, open_timeout=10, max_size=None) as ws:
            for session in self.sessions:
                await self._subscribe(ws, session)
            self.connected.set()
            while not goal.done(self.tally, self.sessions):
                try:
                    raw = await asyncio.wait_for(ws.recv(), _IDLE_S)
                except TimeoutError:
                    continue
                frame = json.loads(raw)
                if frame["op"] == "event":
                    event = frame["event"]
                    self.tally.add(event["session"], event["seq"])
                    self.cursors[event["session"]] = frame["cursor"]
                elif frame["op"] == "error":
                    await self._on_error(ws, frame)

    async def _subscribe(self, ws: Any, session: str) -> None:
        start = self.cursors.get(session, "start")
        frame = {"op": "subscribe", "session": session, "from": start, "id": session}
        await ws.send(json.dumps(frame))

    async def _on_error(self, ws: Any, frame: dict[str, Any]) -> None:
        """A subscription refused or dropped (NATS away, a failed replay): again, from its cursor."""
        if frame.get("code") == "already_subscribed":
            return  # a resubscribe after an error for a subscription that had stayed
        if frame.get("code") not in _RETRYABLE:
            self.tally.errors.append(json.dumps(frame))
        session = frame.get("session") or frame.get("id")
        if session in self.tally.seqs and frame.get("code") != "lagged":
            self.tally.reconnects += 1
            await asyncio.sleep(random.uniform(*_RETRY_S))
            await self._subscribe(ws, session)


async def _until_goal(read: Coroutine[Any, Any, None], done: Callable[[], bool]) -> None:
    """Run a read; cancel it once the goal is met (an idle stream would only end at a heartbeat)."""
    task = asyncio.ensure_future(read)
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=_IDLE_S)
            if not task.done() and done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                return
        task.result()
    finally:
        task.cancel()


_RETRYABLE = {"nats_unavailable", "too_many_streams", "rate_limited", "queue_full", "lagged"}


def _transient(exc: BaseException) -> bool:
    """What a fault makes of a connection: refused, reset, closed, timed out (then: reconnect)."""
    return isinstance(
        exc,
        httpx.TransportError | OSError | websockets.ConnectionClosed | TimeoutError
        | websockets.InvalidHandshake | httpx.RemoteProtocolError,
    )  # fmt: skip


def http_client() -> httpx.AsyncClient:
    """One client for hundreds of streams: no pool limit, no read timeout (heartbeats come)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(10, read=30),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
    )


async def follow_all(followers: list[SseFollower | WsFollower], goal: Goal) -> list[Tally]:
    """Run every follower until its goal; bounded by the caller's timeout."""
    return list(await asyncio.gather(*(f.run(goal) for f in followers)))
