"""The benchmark producer: envelopes at a steady rate, to JetStream or to an Nchan publisher.

Events are spread evenly in time over all sessions (producer/pacing.py: the
k-th event of the run is due at k / (sessions * rate) seconds and goes to
session k mod sessions), as independent agents would produce them, not in one
burst per tick. Each is a
real envelope (`text.delta`, `--size` bytes of text) stamped with `ts` when it
is published. The JetStream target publishes without waiting for acks and
checks the stream's count at the end; the Nchan target POSTs to
`/pub/<session>` over a few pipelined keep-alive connections (one per session,
so a session's order holds) and counts the 2xx answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from agentcast.bus import connect, ensure_streams
from agentcast.codec import encode
from agentcast.events import TextDeltaData, make_event
from agentcast.settings import Settings
from agentcast.subjects import EVENTS_STREAM, event_subject
from producer.pacing import EvenPacer

_TICK_S = 0.0005
_SETTLE_S = 15.0


class NatsTarget:
    def __init__(self, url: str) -> None:
        self.url = url
        self.sent = 0

    async def open(self) -> None:
        self.nc = await connect(Settings.load({"nats_url": self.url}, environ={}), "bench-feed")
        self.js = self.nc.jetstream()
        await ensure_streams(self.js, Settings.load({"nats_url": self.url}, environ={}))
        self.before = (await self.js.stream_info(EVENTS_STREAM)).state.messages
        self._subjects: dict[str, str] = {}

    async def publish(self, session: str, payload: bytes) -> None:
        subject = self._subjects.get(session)
        if subject is None:
            subject = self._subjects[session] = event_subject(session, "text.delta")
        await self.nc.publish(subject, payload)
        self.sent += 1

    async def close(self) -> int:
        """How many of the published events JetStream did not store (0 when all are in)."""
        await self.nc.flush()
        deadline = time.monotonic() + _SETTLE_S
        stored = 0
        while time.monotonic() < deadline:
            stored = (await self.js.stream_info(EVENTS_STREAM)).state.messages - self.before
            if stored >= self.sent:
                break
            await asyncio.sleep(0.1)
        await self.nc.close()
        return self.sent - stored


class NchanTarget:
    def __init__(self, port: int, connections: int = 4) -> None:
        self.port = port
        self.connections = connections
        self.sent = 0
        self.ok = 0
        self.bad = 0

    async def open(self) -> None:
        self._writers = []
        self._readers = []
        for _ in range(self.connections):
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            self._writers.append(writer)
            self._readers.append(asyncio.create_task(self._count(reader)))

    async def _count(self, reader: asyncio.StreamReader) -> None:
        # Each tail is one byte shorter than its pattern: a match across two reads counts once.
        any_tail = ok_tail = b""
        while data := await reader.read(1 << 16):
            answers = (any_tail + data).count(b"HTTP/1.1 ")
            created = (ok_tail + data).count(b"HTTP/1.1 20")
            self.ok += created
            self.bad += answers - created
            any_tail, ok_tail = (any_tail + data)[-8:], (ok_tail + data)[-10:]

    async def publish(self, session: str, payload: bytes) -> None:
        writer = self._writers[hash(session) % self.connections]
        writer.write(
            b"POST /pub/%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (session.encode(), len(payload), payload)
        )
        self.sent += 1
        if writer.transport.get_write_buffer_size() > 1 << 20:
            await writer.drain()

    async def close(self) -> int:
        deadline = time.monotonic() + _SETTLE_S
        while self.ok + self.bad < self.sent and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for writer in self._writers:
            writer.close()
        for task in self._readers:
            task.cancel()
        return self.sent - self.ok


Target = NatsTarget | NchanTarget


@dataclass
class Fed:
    """What was published: per session, in all and since the measurement start t0."""

    total: dict[str, int] = field(default_factory=dict)
    measured: dict[str, int] = field(default_factory=dict)
    t0_ns: int = 0
    measured_s: float = 0.0
    lost_upstream: int = 0


async def feed(
    target: Target,
    sessions: list[str],
    rate: float,
    *,
    warmup_s: float,
    seconds: float,
    size: int,
    on_plan: Callable[[int], Awaitable[None]],
    on_t0: Callable[[], None],
) -> Fed:
    """Publish `rate` events/s per session for warmup + seconds; bounded in time and count.

    The measurement starts at t0 = now + warmup: `on_plan(t0)` is awaited first (the
    clients learn t0 before any event they must count can reach them), `on_t0()` is
    called when t0 passes; events stamped `ts >= t0` are the measured ones.
    """
    text = "x" * size
    seq = dict.fromkeys(sessions, 0)
    fed = Fed(total=dict.fromkeys(sessions, 0), measured=dict.fromkeys(sessions, 0))
    pacer = EvenPacer(len(sessions), rate, limit=int(rate * len(sessions) * (warmup_s + seconds)))
    fed.t0_ns = t0 = time.time_ns() + int(warmup_s * 1e9)
    await on_plan(t0)
    start = time.perf_counter()
    measure_start = 0.0
    while not pacer.exhausted:
        elapsed = time.perf_counter() - start
        if elapsed >= warmup_s + seconds:
            break
        for index in pacer.due(elapsed):
            session = sessions[index]
            seq[session] += 1
            ts = time.time_ns()
            event = make_event(
                TextDeltaData(index=0, text=text), id=f"{session}.{seq[session]}",
                session=session, run=1, seq=seq[session], ts=ts,
            )  # fmt: skip
            await target.publish(session, encode(event))
            fed.total[session] += 1
            if ts >= t0:
                if not measure_start:
                    measure_start = time.perf_counter()
                    on_t0()
                fed.measured[session] += 1
        await asyncio.sleep(_TICK_S)
    fed.measured_s = time.perf_counter() - measure_start if measure_start else 0.0
    return fed
