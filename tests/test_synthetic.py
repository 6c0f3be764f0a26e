"""The synthetic producer replays recorded traces for many sessions, gapless, at a rate."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from agentcast.codec import decode_loose
from agentcast.events import TERMINAL_TYPES
from agentcast.settings import Settings
from agentcast.subjects import EVENTS_STREAM


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
    assert terminals > 0  # short traces loop: runs close and new ones open


def _from_start() -> ConsumerConfig:
    return ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
