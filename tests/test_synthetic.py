"""The synthetic producer replays recorded traces for many sessions, gapless, at a rate."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

import pytest
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from agentcast.codec import decode_loose
from agentcast.events import TERMINAL_TYPES
from agentcast.settings import Settings
from agentcast.subjects import EVENTS_STREAM
from producer.pacing import EvenPacer


async def test_bench_produce_publishes_every_session_gapless_at_the_rate(
    js: JetStreamContext, settings: Settings
) -> None:
    assert settings.nats_url
    prefix = f"syn{uuid.uuid4().hex[:6]}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentcast.cli",
        "bench",
        "produce",
        "--nats",
        settings.nats_url,
        "--sessions",
        "20",
        "--rate",
        "40",
        "--seconds",
        "2",
        "--prefix",
        prefix,
        "--json",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    report = json.loads(out)
    # Paced: about 20 sessions x 40 events/s x 2 s, never more than that.
    assert 0 < report["events"] <= 20 * 40 * 2 + 20
    assert report["events"] >= 20 * 40 * 2 * 0.5
    seqs: dict[str, list[int]] = {}
    terminals = 0
    for i in range(20):
        session = f"{prefix}_{i}"
        sub = await js.subscribe(
            f"agentcast.evt.{session}.>", ordered_consumer=True, config=_from_start()
        )
        info = await js.stream_info(EVENTS_STREAM, subjects_filter=f"agentcast.evt.{session}.>")
        count = sum((info.state.subjects or {}).values())
        for _ in range(count):
            event = decode_loose((await sub.next_msg(timeout=5)).data)
            seqs.setdefault(session, []).append(event.seq)
            terminals += event.type in TERMINAL_TYPES
        await sub.unsubscribe()
    assert sum(map(len, seqs.values())) == report["events"]
    assert len(seqs) == 20
    assert all(s == list(range(1, len(s) + 1)) for s in seqs.values())
    # Paced evenly over sessions: no session is ahead of another by more than one event.
    counts = [len(s) for s in seqs.values()]
    assert max(counts) - min(counts) <= 1
    assert terminals > 0  # short traces loop: runs close and new ones open


def _from_start() -> ConsumerConfig:
    return ConsumerConfig(deliver_policy=DeliverPolicy.ALL)


def test_pacer_spreads_events_evenly_over_time_and_sessions() -> None:
    pacer = EvenPacer(sessions=4, rate=10, limit=100)  # 40 events/s in all
    assert list(pacer.due(0.0)) == [0]  # event 0 is due at once
    assert list(pacer.due(0.01)) == []  # the next one at 1/40 s
    assert list(pacer.due(0.1)) == [1, 2, 3, 0]  # round robin, in event order
    assert list(pacer.due(0.1)) == []  # nothing is yielded twice
    later = list(pacer.due(10.0))  # a late tick catches up, up to the limit
    assert len(later) == 100 - 5 and pacer.exhausted
    assert [later.count(i) for i in range(4)] == [23, 24, 24, 24]  # 25 each in all


def test_pacer_refuses_what_it_cannot_pace() -> None:
    for sessions, rate in ((0, 10.0), (4, 0.0), (4, -1.0)):
        with pytest.raises(ValueError):
            EvenPacer(sessions, rate)
