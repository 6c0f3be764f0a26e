"""agentcast.client against real gateways: resume across kill -9, lagged, typed errors."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from nats.js import JetStreamContext

from agentcast.client import (
    Client,
    ClientError,
    CursorExpired,
    Forbidden,
    NotFound,
    SyncClient,
    Unauthorized,
    event_type,
)
from agentcast.events import TERMINAL_TYPES, AnyEvent, Event, RunQueued, TextDelta, TextDeltaData
from agentcast.subjects import EVENTS_STREAM, session_events
from tests.support.events import build_events, publish_events, simple_run, unique_session
from tests.support.gateway import GatewayProcess, token
from tests.support.up import Up, running_up

HEAVY = 256 * 1024
HEAVY_EVENTS = 30


@pytest.fixture(scope="module")
async def demo(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Up]:
    data = tmp_path_factory.mktemp("up") / "data"
    async with running_up(data, "--demo", "--demo-agents", "0", "--speed", "0.3") as up:
        yield up


async def _until_terminal(events: AsyncIterator[Event | AnyEvent]) -> list[Event | AnyEvent]:
    got = []
    async for event in events:
        got.append(event)
        if event_type(event) in TERMINAL_TYPES:
            return got
    raise AssertionError("unreachable: a session stream never ends")


async def test_a_real_run_streams_typed_events_through_a_gateway_kill_and_restart(
    demo: Up,
) -> None:
    """kill -9 the gateway mid-run (`up` restarts it): the client ends with every event once."""
    async with Client(demo.base, demo.token) as client:
        queued = await client.run("[scenario:slow] a long answer please")
        assert queued.run == 1 and queued.session
        stream = client.events(queued.session)
        got: list[Event | AnyEvent] = []
        async for event in stream:  # until a few deltas have arrived, then the crash
            got.append(event)
            if sum(isinstance(e, TextDelta) for e in got) >= 5:
                break
        killed = demo.gateway_pid()
        os.kill(killed, signal.SIGKILL)
        # The same generator continues: a fresh one would start from its own `from_`.
        got += await _until_terminal(_resume(stream))
        assert client.stats.reconnects >= 1
        assert demo.gateway_pid() != killed

        assert isinstance(got[0], RunQueued) and event_type(got[-1]) == "run.completed"
        seqs = [e.seq for e in got]
        assert seqs == list(range(1, len(got) + 1)), "an event lost or repeated"
        again = await _until_terminal(client.events(queued.session))
        assert [e.id for e in again] == [e.id for e in got]
        text = "".join(e.data.text for e in got if isinstance(e, TextDelta))
        assert text.startswith("Here is a long answer")

        snapshot = await client.snapshot(queued.session)
        assert snapshot.session == queued.session and snapshot.run == 1
        listed = await client.sessions()
        assert queued.session in {s.session for s in listed}


async def _resume(stream: AsyncIterator[Event | AnyEvent]) -> AsyncIterator[Event | AnyEvent]:
    async for event in stream:
        yield event


async def test_follow_up_and_cancel(demo: Up) -> None:
    async with Client(demo.base, demo.token) as client:
        queued = await client.run("[scenario:quick] hi")
        first = await _until_terminal(client.events(queued.session))
        assert event_type(first[-1]) == "run.completed"
        follow = await client.message(queued.session, "[scenario:slow] and now at length")
        assert follow.run == 2
        cursor_run2 = client.events(queued.session, types=["run.*", "text.delta"])
        async for event in cursor_run2:
            if isinstance(event, TextDelta) and event.run == 2:
                break
        reply = await client.cancel(queued.session)
        assert reply.ok and reply.run == 2
        closing = await _until_terminal(_resume(cursor_run2))
        assert event_type(closing[-1]) == "run.cancelled"
        with pytest.raises(ClientError) as refused:
            await client.cancel(queued.session)
        assert refused.value.status == 409  # not_running, or refused by the worker still holding it


async def test_a_slow_reader_is_told_lagged_and_resumes_without_loss(
    gateway: GatewayProcess, js: JetStreamContext
) -> None:
    """A reader that stops reading (a fixed 64 KiB receive window, no autotuning) is dropped as lagged by the
    gateway; the client reconnects from its cursor and still yields each event once."""
    prefix = unique_session("lag")
    light, heavy = f"{prefix}_a", f"{prefix}_b"
    lights = build_events(light, [TextDeltaData(index=0, text=f"{i}") for i in range(HEAVY_EVENTS)])
    heavies = build_events(
        heavy, [TextDeltaData(index=0, text="y" * HEAVY) for _ in range(HEAVY_EVENTS)]
    )
    published = [e for pair in zip(lights, heavies, strict=True) for e in pair]
    tiny_window = httpx.AsyncHTTPTransport(
        socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)]
    )
    lagged = "agentcast_gateway_lagged_disconnects_total"
    lagged_before = gateway.metric(lagged, transport="sse")
    async with Client(gateway.url, token(), transport=tiny_window) as client:
        stream = client.firehose(f"{prefix}_*", from_="start")
        await publish_events(js, published[:1])
        got = [await anext(stream)]  # connected and live
        await publish_events(js, published[1:])
        for _ in range(400):  # no read until the gateway gives up on us
            if await asyncio.to_thread(gateway.metric, lagged, transport="sse") > lagged_before:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the gateway never dropped the stalled reader")
        async with asyncio.timeout(120):
            while len(got) < len(published):
                got.append(await anext(stream))
        assert client.stats.lagged >= 1 and client.stats.reconnects >= 1
    assert [e.id for e in got] == [e.id for e in published], "an event lost, repeated or moved"


async def test_refusals_are_typed_exceptions(gateway: GatewayProcess, js: JetStreamContext) -> None:
    session = unique_session("auth")
    await publish_events(js, build_events(session, simple_run()))
    async with Client(gateway.url, "not-a-token") as client:
        with pytest.raises(Unauthorized) as bad:
            await anext(client.events(session))
        assert bad.value.status == 401
        with pytest.raises(Unauthorized):
            await client.sessions()
    async with Client(gateway.url, token(("read",), sessions="other_*")) as client:
        with pytest.raises(Forbidden):
            await anext(client.events(session))
        with pytest.raises(Forbidden):
            await anext(client.firehose("*"))
    async with Client(gateway.url, token(("read",))) as client:
        with pytest.raises(Forbidden) as no_scope:
            await client.run("hello", session=session)
        assert no_scope.value.status == 403
        with pytest.raises(NotFound):
            await client.snapshot(unique_session("none"))


async def test_an_expired_cursor_raises_with_the_earliest_cursor(
    gateway: GatewayProcess, js: JetStreamContext
) -> None:
    session = unique_session("exp")
    cursors = await publish_events(js, build_events(session, simple_run()))
    # Retention removed the session's first three events.
    await js.purge_stream(EVENTS_STREAM, subject=session_events(session), seq=cursors[3])
    async with Client(gateway.url, token()) as client:
        with pytest.raises(CursorExpired) as expired:
            await anext(client.events(session, from_=str(cursors[0])))
        assert expired.value.earliest == str(cursors[3])
        resumed = client.events(session, from_=expired.value.earliest)
        assert (await anext(resumed)).seq == 5


async def test_the_sync_client_reads_and_refuses_like_the_async_one(
    gateway: GatewayProcess, js: JetStreamContext
) -> None:
    session = unique_session("sync")
    events = build_events(session, simple_run())
    await publish_events(js, events)

    def script() -> list[str]:
        with SyncClient(gateway.url, token()) as client:
            ids = []
            for event in client.events(session):
                ids.append(event.id)
                if event_type(event) in TERMINAL_TYPES:
                    break
            with pytest.raises(Forbidden):
                client.run("hello")
            return ids

    # Called straight from a coroutine, as in a notebook: a loop already runs in this thread.
    assert script() == [e.id for e in events]
