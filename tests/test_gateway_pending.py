"""Pending limits hold on both live paths: past them a topic counts a slow consumer and refills.

With the Tap off, nats-py queues a topic's messages for its callback and drops
those past `pending_msgs` (SlowConsumerError); with the Tap on, nothing queues
but what a refill holds, bounded the same way. A burst is made to arrive in
one read of the socket by blocking the test's event loop while another thread
publishes it; the client must still get every event, once, in order.
"""

from __future__ import annotations

import asyncio
import re
import threading

import pytest
from nats.js import JetStreamContext

from agentcast.bus import connect, disconnect
from agentcast.events import Event
from agentcast.settings import Settings
from agentcast.subjects import EVENTS_STREAM, session_events
from gateway.feed import Subscription
from gateway.hub import Hub
from gateway.output import SseWire
from gateway.replay import DirectReader
from gateway.sink import Sink
from gateway.telemetry import Stats
from tests.support.events import build_events, publish_events, simple_run, unique_session
from tests.test_gateway_fastpath import _Transport

BURST = 60
LIMIT = 5


def _publish_blocking(settings: Settings, events: list[Event]) -> None:
    """Publish from a thread with its own loop and connection, blocking the caller's loop."""

    async def publish() -> None:
        nc = await connect(settings, "test-burst")
        try:
            await publish_events(nc.jetstream(), events)
        finally:
            await disconnect(nc)

    thread = threading.Thread(target=asyncio.run, args=(publish(),))
    thread.start()
    thread.join()  # on purpose: the test's loop reads nothing until the burst is stored


@pytest.mark.parametrize("fastpath", [True, False], ids=["tap", "callbacks"])
async def test_past_the_pending_limits_a_topic_refills_and_the_client_misses_nothing(
    settings: Settings, js: JetStreamContext, fastpath: bool
) -> None:
    """`js`: the streams exist."""
    hubs: list[Hub] = []

    async def on_error(exc: Exception) -> None:
        for hub in hubs:
            await hub.on_error(exc)

    nc = await connect(settings, "test-pending", on_error=on_error)
    reader = DirectReader(nc, EVENTS_STREAM)
    await reader.start()
    stats = Stats()
    hub = Hub(
        nc, reader, stats, replay_batch=16, heartbeat_s=15, fastpath=fastpath,
        pending_msgs=LIMIT, pending_bytes=1 << 20,
    )  # fmt: skip
    hubs.append(hub)
    assert hub.tap.installed is fastpath
    session = unique_session("pending")
    events = build_events(session, simple_run(BURST))
    transport = _Transport()
    sink = Sink(SseWire(transport), 1 << 26, stats, hub.flusher)
    try:
        seqs = await publish_events(nc.jetstream(), events[:1])
        async with hub.connect(sink) as client:
            sub = Subscription(
                session, sink, session_events(session), after=0, types=None, sessions=None
            )
            await client.subscribe(session, sub)
            await client.catch_up(sub)
            if fastpath:
                # Only a refill holds messages on the Tap's path: start one, as a reconnect does.
                hub.topics[session].resync()
            _publish_blocking(settings, events[1:])
            for _ in range(400):
                ids = re.findall(rb"^id: (\d+)$", b"".join(transport.writes), re.MULTILINE)
                if len(ids) >= len(events):
                    break
                await asyncio.sleep(0.05)
            seqs += [seqs[0] + i for i in range(1, len(events))]  # one session, one writer
        assert [int(i) for i in ids] == seqs
        assert stats.slow_consumers >= 1
        assert stats.gap_refills >= 1
    finally:
        await hub.close()
        await reader.stop()
        await disconnect(nc)
