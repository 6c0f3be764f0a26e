"""The gateway's hot path: the NATS Tap against a real nats-server, and the coalescing Sink."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from agentcast._internals import http_chunk
from agentcast.events import type_of
from agentcast.subjects import LIVE_PREFIX
from gateway.frames import HEARTBEAT, Frame
from gateway.hub import HEARTBEAT_PASSES, Hub
from gateway.output import SseWire, WsWire
from gateway.sink import Flusher, Sink
from gateway.telemetry import Stats
from gateway.upstream import Tap, positions
from tests.support.events import build_events, publish_events, simple_run, unique_session
from tests.support.gateway import GatewayProcess, token


def test_positions_come_from_the_raw_header_block() -> None:
    block = (
        b"NATS/1.0\r\nNats-Stream: AGENTCAST_EVENTS\r\nNats-Subject: agentcast.evt.s.status\r\n"
        b"Nats-Sequence: 1207\r\nNats-Time-Stamp: 2026-01-01T00:00:00Z\r\n"
        b"Nats-Last-Sequence: 1190\r\n\r\n"
    )
    assert positions(block) == (1207, 1190)
    assert positions(block.replace(b"Nats-Last-Sequence: 1190\r\n", b"")) == (1207, 0)


async def test_the_tap_routes_live_messages_with_their_cursors_and_leaves_others_to_nats_py(
    nc: Client, js: JetStreamContext
) -> None:
    session = unique_session("tap")
    tap = Tap(nc)
    assert tap.installed
    routed: list[tuple[bytes, bytes, int, int]] = []
    by_callback: list[Msg] = []

    async def unexpected(msg: Msg) -> None:
        raise AssertionError(f"the tap let {msg.subject} through")

    async def other(msg: Msg) -> None:
        by_callback.append(msg)

    live = await nc.subscribe(f"{LIVE_PREFIX}.{session}.>", cb=unexpected)
    plain = await nc.subscribe(f"plain.{session}", cb=other)
    tap.add(live, lambda *args: routed.append(args))
    events = build_events(session, simple_run(3))
    seqs = await publish_events(js, events)
    await nc.publish(f"plain.{session}", b"untouched", headers={"X": "1"})
    for _ in range(200):
        if len(routed) == len(events) and by_callback:
            break
        await asyncio.sleep(0.02)
    tap.remove(live)
    await live.unsubscribe()
    await plain.unsubscribe()

    assert [r[2] for r in routed] == seqs
    previous: dict[str, int] = {}  # Nats-Last-Sequence: the previous one on the same subject
    expected_last = []
    for event, seq in zip(events, seqs, strict=True):
        expected_last.append(previous.get(type_of(event), 0))
        previous[type_of(event)] = seq
    assert [r[3] for r in routed] == expected_last
    assert routed[0][0] == f"{LIVE_PREFIX}.{session}.run.queued".encode()
    assert [m.data for m in by_callback] == [b"untouched"] and by_callback[0].headers == {"X": "1"}


class _Transport(asyncio.WriteTransport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closing


async def test_frames_offered_in_one_batch_leave_in_one_write_and_finish_flushes_first() -> None:
    stats, flusher = Stats(), Flusher()
    transport = _Transport()
    sink = Sink(SseWire(transport), 1 << 20, stats, flusher)
    frames = [Frame(i, "s", "text.delta", b'{"n":%d}' % i) for i in range(1, 4)]
    for frame in frames:
        assert sink.offer(frame)
    assert transport.writes == []  # nothing until the batch is done
    await asyncio.sleep(0)
    assert transport.writes == [b"".join(f.sse for f in frames)]
    assert stats.events_out["sse"] == 3

    sink.offer(Frame(4, "s", "text.delta", b"{}"))
    sink.finish("lagged")  # the queued frame is written before anything else
    sink.send(b"notice")
    assert transport.writes[1:] == [Frame(4, "s", "text.delta", b"{}").sse, http_chunk(b"notice")]
    await sink.wait()  # already finished: returns at once
    assert not sink.offer(Frame(5, "s", "text.delta", b"{}"))


async def test_a_closed_transport_ends_the_sink_as_disconnected_at_flush() -> None:
    transport = _Transport()
    sink = Sink(WsWire(transport), 1 << 20, Stats(), Flusher())
    sink.offer(Frame(1, "s", "status", b"{}"))
    transport.closing = True
    waiter = asyncio.ensure_future(sink.wait())
    await asyncio.sleep(0)
    await asyncio.wait_for(waiter, 1)
    assert sink.reason == "disconnected" and transport.writes == []


async def test_heartbeats_go_to_idle_sse_clients_only() -> None:
    hub = Hub(object(), None, Stats(), replay_batch=1, heartbeat_s=15)  # type: ignore[arg-type]
    busy, idle = _Transport(), _Transport()
    hub.sinks = {
        Sink(SseWire(busy), 1 << 20, hub.stats, hub.flusher),
        Sink(SseWire(idle), 1 << 20, hub.stats, hub.flusher),
    }
    for sink in hub.sinks:
        if sink.output.transport is busy:  # type: ignore[attr-defined]
            sink.offer(Frame(1, "s", "status", b"{}"))
    await asyncio.sleep(0)
    # HEARTBEAT_PASSES passes per interval: a client idle for all but one gets a heartbeat.
    for _ in range(HEARTBEAT_PASSES - 1):
        await hub.beat()
    assert idle.writes == [http_chunk(HEARTBEAT)] and len(busy.writes) == 1
    await hub.beat()  # the busy one's frame came before the first of these passes
    assert len(idle.writes) == 1 and busy.writes[1:] == [http_chunk(HEARTBEAT)]


async def test_sse_clients_that_go_away_are_released_with_their_subscriptions(
    gateway: GatewayProcess,
) -> None:
    """No task waits on an SSE client's socket: the transport itself reports it gone."""
    session = unique_session("gone")
    open_before = gateway.metric("agentcast_gateway_connections", transport="sse")
    subs_before = gateway.metric("agentcast_gateway_subscriptions")
    socks = []
    for i in range(20):
        sock = socket.create_connection(("127.0.0.1", gateway.port))
        sock.sendall(
            f"GET /v1/sessions/{session}/events?from=now HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {token()}\r\n\r\n".encode()
        )
        if i % 2:  # half reset, half closed in order
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        socks.append(sock)
    await _until(lambda: gateway.metric("agentcast_gateway_subscriptions") >= subs_before + 20)
    for sock in socks:
        sock.close()
    await _until(
        lambda: (
            gateway.metric("agentcast_gateway_connections", transport="sse") <= open_before
            and gateway.metric("agentcast_gateway_subscriptions") <= subs_before
        )
    )


async def _until(predicate: Callable[[], bool], rounds: int = 400) -> None:
    for _ in range(rounds):
        if await asyncio.to_thread(predicate):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("never happened")
