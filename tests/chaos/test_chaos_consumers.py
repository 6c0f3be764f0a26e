"""The archiver and the metrics consumer killed (kill -9) mid-batch, again and again, under load.

Beside them an archiver that is never interrupted reads the same stream into
its own directory. Afterwards the interrupted archive is byte-identical to the
uninterrupted one, and every snapshot equals the pure reducer's over the
stored events (an event applied twice or skipped would change its sums).
Each kill waits for a moment when the consumer holds deliveries it has not acked (mid-batch).
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from agentcast.subjects import EVENTS_STREAM
from consumers.archive.files import iter_archive
from tests.support.chaos import (
    Producer,
    Stoppable,
    archive_tally,
    archiver,
    counts,
    metrics,
    settle,
    stored_events,
)
from tests.support.chaos_load import caught_up
from tests.support.nats import PrivateNats
from tests.support.roles import Role, unique_name

pytestmark = pytest.mark.timeout(240)

_KILLS = 3


async def _mid_batch(js: JetStreamContext, durable: str) -> bool:
    """Wait (briefly, bounded) until the consumer holds deliveries it has not acked yet."""
    # Back to back: between a pull and its ack is a few milliseconds of handling and fsync.
    deadline = asyncio.get_running_loop().time() + 3
    while asyncio.get_running_loop().time() < deadline:
        info = await js.consumer_info(EVENTS_STREAM, durable)
        if info.num_ack_pending:
            return True
    return False


async def test_archiver_and_metrics_killed_mid_batch_archive_identical_snapshots_equal(
    private_nats: PrivateNats, tmp_path: Path, procs: list[Stoppable]
) -> None:
    bus, js = private_nats.server, private_nats.nc.jetstream()
    rng = random.Random(20261201)
    reference = archiver(
        bus, tmp_path, "reference", user="admin", AGENTCAST_ARCHIVE_CONSUMER="ref-arc"
    )
    crashing = archiver(bus, tmp_path, "archiver")
    # The archiver flushes often (each flush is a window between a pull and its ack); the metrics
    # consumer acks only when it stores its states, every 3 s here: long windows.
    progress = metrics(bus, tmp_path, AGENTCAST_PROGRESS_STORE_S="3")
    procs += [reference, crashing, progress]
    for role in (reference, crashing, progress):
        await asyncio.to_thread(role.start)
    prefix = unique_name("cc").replace("-", "")
    producer = Producer(bus, tmp_path, prefix, sessions=16, rate=15, seconds=8)
    await producer.start()

    mid_batch = {durable: 0 for durable in ("agentcast-archiver", "agentcast-metrics")}
    victims: list[tuple[Role, str]] = [
        (crashing, "agentcast-archiver"),
        (progress, "agentcast-metrics"),
    ]
    try:
        for _ in range(_KILLS):
            await asyncio.sleep(rng.uniform(0.5, 1.5))
            for role, durable in victims:
                mid_batch[durable] += await _mid_batch(js, durable)
                role.kill()
            for role, _durable in victims:
                await asyncio.to_thread(role.start)
        report = await producer.wait()
    finally:
        producer.kill()
    assert all(mid_batch.values()), f"no kill landed mid-batch: {mid_batch}"
    events = await stored_events(js, prefix)
    assert sum(len(e) for e in events.values()) == report["events"]
    consumers = await caught_up(js, tmp_path / "archiver" / "archive", events)
    await caught_up(js, tmp_path / "reference" / "archive", events)
    for role in (reference, crashing, progress):
        assert role.stop() == 0, role.output()[-3000:]
    root, ref_root = tmp_path / "archiver" / "archive", tmp_path / "reference" / "archive"
    got = {p.relative_to(root): p.read_bytes() for p in iter_archive(root)}
    want = {p.relative_to(ref_root): p.read_bytes() for p in iter_archive(ref_root)}
    assert sorted(got) == sorted(want) and len(got) == len(events)
    different = [str(p) for p in want if got[p] != want[p]]
    assert not different, different[:5]
    settle(
        "archiver + metrics kill -9 mid-batch", counts(events),
        [*consumers, archive_tally(ref_root, "reference archiver")],
        kills_each=_KILLS, kills_mid_batch=mid_batch, archive_files_identical=len(got),
        archiver_starts=crashing.starts, metrics_starts=progress.starts,
    )  # fmt: skip
