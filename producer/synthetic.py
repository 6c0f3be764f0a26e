"""Synthetic producer: replays recorded agent traces for many sessions at a chosen rate.

A trace is a Claude Code CLI transcript (raw stream-json lines, as recorded
from real runs against the scripted model). Each replayed event goes the
production path: SDK parser -> Normalizer -> envelope -> SessionPublisher ->
JetStream. No CLI runs, so thousands of sessions fit in one process.

Pacing is one ticker for all sessions (producer/pacing.py): events are spread
evenly over time and sessions, so a tick costs the events due in it, not a
visit per session; `rate=0` publishes as fast as acks allow, which measures
the publisher's ceiling.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from claude_agent_sdk._internal.message_parser import parse_message

from agentcast.events import EventData, RunQueuedData
from producer.acks import AckRouter
from producer.normalize import Draft, Normalizer
from producer.pacing import EvenPacer
from producer.publisher import SessionPublisher

_TICK_S = 0.01
_UNPACED_BURST = 64


def trace_files() -> list[Path]:
    """The transcripts shipped with agentcast (producer/traces/*.jsonl)."""
    root = resources.files("producer") / "traces"
    return sorted(Path(str(p)) for p in root.iterdir() if p.name.endswith(".jsonl"))


def load_trace(path: Path) -> list[Draft]:
    """A transcript as the drafts the normalizer makes of it, opened by run.queued."""
    normalizer = Normalizer()
    drafts = [Draft(RunQueuedData(prompt=f"replay of {path.stem}"))]
    for line in path.read_text().splitlines():
        message = parse_message(json.loads(line))
        if message is not None:
            drafts.extend(normalizer.feed(message))
    return drafts


def freeze_startup_objects() -> None:
    """Exempt everything alive now (modules, the SDK, the loaded traces) from garbage collection.

    They live as long as the process. Each event's Outgoing is retained a
    second after its ack, so it reaches the oldest generation and drives full
    collections; frozen, those passes stop walking the startup objects: GC
    per event at 1,000 sessions x 20 events/s went from 5.6 to 2.0 µs.
    """
    gc.collect()
    gc.freeze()


@dataclass
class ProduceReport:
    sessions: int
    events: int
    seconds: float
    events_per_s: float
    runs: int


class _Replay:
    """One synthetic session: loops over its trace, one run per pass."""

    def __init__(self, publisher: SessionPublisher, trace: list[Draft]) -> None:
        self.publisher = publisher
        self.trace = trace
        self.position = 0
        self.run = 1
        self.emitted = 0

    async def emit(self, count: int) -> None:
        for _ in range(count):
            draft = self.trace[self.position]
            data: EventData = draft.data
            await self.publisher.emit(
                data, run=self.run, parent_tool_use_id=draft.parent_tool_use_id
            )
            self.emitted += 1
            self.position += 1
            if self.position == len(self.trace):
                self.position = 0
                self.run += 1


async def produce(
    acks: AckRouter,
    *,
    sessions: int,
    rate: float,
    seconds: float,
    max_msg_size: int,
    traces: list[list[Draft]],
    prefix: str = "",
    progress: Callable[[int, float], None] | None = None,
) -> ProduceReport:
    """Publish for `seconds`, then wait for every ack; bounded in time and count."""
    prefix = prefix or f"syn_{uuid.uuid4().hex[:6]}"
    replays = [
        _Replay(
            SessionPublisher(acks, f"{prefix}_{i}", next_seq=1, max_msg_size=max_msg_size),
            traces[i % len(traces)],
        )
        for i in range(sessions)
    ]
    pacer = EvenPacer(sessions, rate) if rate > 0 else None
    started = time.perf_counter()
    next_report = started + 1.0
    while (now := time.perf_counter()) - started < seconds:
        elapsed = now - started
        if pacer is None:
            for replay in replays:
                await replay.emit(_UNPACED_BURST)
        else:
            for index in pacer.due(elapsed):
                await replays[index].emit(1)
        if progress is not None and now >= next_report:
            progress(sum(r.emitted for r in replays), elapsed)
            next_report += 1.0
        await asyncio.sleep(_TICK_S if pacer is not None else 0)
    await asyncio.gather(*(r.publisher.close(timeout_s=60) for r in replays))
    total = time.perf_counter() - started
    events = sum(r.emitted for r in replays)
    return ProduceReport(
        sessions=sessions,
        events=events,
        seconds=total,
        events_per_s=events / total,
        runs=sum(r.run - (r.position == 0) for r in replays),
    )
