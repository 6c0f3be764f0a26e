"""One chaos run: clients following, the synthetic producer publishing, a fault in the middle.

`under_load()` connects the clients, starts `agentcast bench produce`, runs the
fault while it publishes, waits for every ack, reads the truth from JetStream,
then waits (bounded) until every client has every event. `caught_up()` waits
until the archive and the snapshots hold every event too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext

from agentcast.events import Event
from tests.support.chaos import (
    Bus,
    Producer,
    Tally,
    archive_tally,
    counts,
    metrics_tally,
    stored_events,
    wait_for,
)
from tests.support.chaos_clients import Goal, SseFollower, WsFollower, follow_all, http_client
from tests.support.gateway import token as mint
from tests.support.roles import unique_name


@dataclass(frozen=True)
class Load:
    sessions: int = 12
    sse_per_session: int = 2
    ws_clients: int = 6
    ws_sessions_each: int = 4
    rate: float = 6.0
    """Events per second per session."""
    seconds: float = 12.0


@dataclass
class Outcome:
    prefix: str
    events: dict[str, list[Event]]
    clients: list[Tally]
    report: dict[str, Any]
    sent: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.sent = counts(self.events)


async def under_load(
    bus: Bus,
    js: Callable[[], JetStreamContext],
    tmp: Path,
    gateways: Callable[[], list[str]],
    fault: Callable[[], Awaitable[object]],
    load: Load = Load(),
    token: Callable[[], str] = mint,
    replicas: int = 1,
) -> Outcome:
    """Clients and the producer around `fault()`; the truth and every client's tally after it.

    `js` is called after the fault (a connection may have been replaced).
    """
    prefix = unique_name("cx").replace("-", "")
    sessions = [f"{prefix}_{i}" for i in range(load.sessions)]
    goal = Goal()
    async with http_client() as http:
        followers: list[SseFollower | WsFollower] = [
            SseFollower(http, gateways, s, token(), f"sse-{i}-{k}", i + k)
            for i, s in enumerate(sessions)
            for k in range(load.sse_per_session)
        ]
        for w in range(load.ws_clients):
            mine = [sessions[(w + j) % load.sessions] for j in range(load.ws_sessions_each)]
            followers.append(WsFollower(gateways, mine, token(), f"ws-{w}", w))
        clients = asyncio.ensure_future(follow_all(followers, goal))
        try:
            async with asyncio.timeout(60):
                await asyncio.gather(*(f.connected.wait() for f in followers))
            producer = Producer(
                bus, tmp, prefix, sessions=load.sessions, rate=load.rate, seconds=load.seconds,
                replicas=replicas,
            )  # fmt: skip
            await producer.start()
            try:
                await fault()
                report = await producer.wait()
            finally:
                producer.kill()
            events = await stored_events(js(), prefix)
            assert sum(len(e) for e in events.values()) == report["events"], (
                f"the stream holds {sum(len(e) for e in events.values())} events, "
                f"the producer had {report['events']} acked"
            )
            goal.sent = counts(events)
            async with asyncio.timeout(150):
                tallies = await clients
        finally:
            clients.cancel()
    return Outcome(prefix, events, tallies, report)


async def caught_up(
    js: JetStreamContext, archive: Path | None, events: dict[str, list[Event]], timeout: float = 90
) -> list[Tally]:
    """Wait until the archive (if any) and the snapshots hold every event; their tallies."""
    sent = counts(events)
    out: list[Tally] = []

    async def done() -> bool:
        out.clear()
        if archive is not None:
            out.append(archive_tally(archive))
        out.append(await metrics_tally(js, events))
        return all(t.distinct(s) >= n for t in out for s, n in sent.items())

    try:
        await wait_for(done, timeout, "the archive and the snapshots to hold every event", 0.5)
    except AssertionError:
        pass  # settle() names what is missing
    return out
