"""The archiver against a real nats-server, as a real process: exactly once, crashes, scale-out."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

import msgspec
import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from agentcast.codec import encode
from agentcast.events import Event, EventData, RunQueuedData, TextDeltaData
from agentcast.settings import Settings
from agentcast.subjects import EVENTS_STREAM
from consumers.archive import chain
from consumers.archive.files import iter_archive, read_bytes, session_of
from consumers.archive.partition import ARCHIVE_PREFIX, ensure_source, partition_of, stream_name
from consumers.archive.verify import verify_file
from consumers.lease import Lease, LeaseHeld
from tests.support.events import build_events, publish_events, simple_run, unique_session
from tests.support.roles import Role, cli, next_stream_seq, unique_name, wait_until
from tests.support.transcript_events import transcript_events

pytestmark = pytest.mark.timeout(90)


def archiver(
    settings: Settings, tmp: Path, name: str, start: int, *extra: str, seal_idle: float = 0.5
) -> Role:
    assert settings.nats_url
    root = tmp / name
    env = {
        "AGENTCAST_ARCHIVE_CONSUMER": unique_name("arc"),
        "AGENTCAST_CONSUMER_START_SEQ": str(start),
        "AGENTCAST_SEAL_IDLE_S": str(seal_idle),
        "AGENTCAST_COMPRESS_SEALED": "1",
    }
    args = ["--nats", settings.nats_url, "--data", str(tmp / "data"), "--dir", str(root), *extra]
    return Role("archiver", args, env, tmp / f"{name}.log", "Archiver ready")


def sealed(root: Path, sessions: set[str]) -> bool:
    """Every session's file is sealed and compressed."""
    done = {session_of(p) for p in root.glob("*/*.jsonl.zst")}
    return sessions <= done


def records(path: Path) -> list[dict[str, object]]:
    return [chain.parse(chain.split(line)[0]) for line in read_bytes(path).splitlines()]


async def test_200_sessions_and_recorded_runs_are_archived_exactly_once_in_order(
    js: JetStreamContext, settings: Settings, tmp_path: Path
) -> None:
    start = await next_stream_seq(js)
    published: dict[str, list[Event]] = {}
    cursors: dict[str, list[int]] = {}
    for name in ("coding_tasks", "subagent"):
        session = unique_session("rec")
        published[session] = transcript_events(name, session)
    for i in range(200):
        session = unique_session("syn")
        published[session] = build_events(session, simple_run(n_text=1 + i % 7, prompt=f"task {i}"))
    sessions = list(published)
    for session in sessions[:100]:
        cursors[session] = await publish_events(js, published[session])
    role = archiver(settings, tmp_path, "archive", start)
    role.start()
    try:
        for session in sessions[100:]:  # half of them while it runs
            cursors[session] = await publish_events(js, published[session])
        root = tmp_path / "archive"
        await wait_until(lambda: sealed(root, set(sessions)), 60, "every session sealed")
    finally:
        assert role.stop() == 0, role.output()[-3000:]
    files = {session_of(p): p for p in iter_archive(root)}
    assert set(files) == set(sessions)
    for session, events in published.items():
        lines = records(files[session])
        assert lines[-1]["seal"] == {
            "session": session,
            "count": len(events),
            "last_seq": len(events),
            "last_hash": chain.split(read_bytes(files[session]).splitlines()[-2])[1],
        }
        body = lines[:-1]
        assert [r["seq"] for r in body] == list(range(1, len(events) + 1))
        assert [r["cursor"] for r in body] == [str(c) for c in cursors[session]]
        for record, event in zip(body, events, strict=True):
            assert {k: v for k, v in record.items() if k != "cursor"} == json.loads(encode(event))
        assert verify_file(files[session]).ok
    verified = await cli("verify", str(root))
    assert verified.returncode == 0, verified.stdout[-2000:]
    assert f"OK: {len(sessions)} files" in verified.stdout
    recorded = sessions[0]
    shown = (await cli("replay", recorded, "--archive", str(root), check=True)).stdout
    assert (
        "⏺ TaskCreate" in shown
        and "Task #1 created successfully" in shown
        and "✔ completed" in shown
    )
    as_json = (
        await cli("replay", recorded, "--archive", str(root), "--json", check=True)
    ).stdout.splitlines()
    assert [json.loads(line)["seq"] for line in as_json] == list(
        range(1, len(published[recorded]) + 1)
    )


def _load(n_sessions: int, rng: random.Random) -> dict[str, list[Event]]:
    """About 10,000 events: sessions of one or two runs, 40 to 160 events each."""
    load: dict[str, list[Event]] = {}
    for i in range(n_sessions):
        session = unique_session("crash")
        events: list[Event] = []
        for run in (1, 2) if i % 3 == 0 else (1,):
            n = rng.randint(20, 60) if run == 2 else rng.randint(40, 100)
            datas: list[EventData] = [RunQueuedData(prompt=f"run {run}")]
            datas += [TextDeltaData(index=0, text=f"{session} r{run} t{k} ") for k in range(n)]
            datas += simple_run(1)[-2:]  # message.completed, run.completed
            events += build_events(session, datas, run=run, first_seq=len(events) + 1)
        load[session] = events
    return load


async def test_kill_9_at_random_points_leaves_files_identical_to_an_uninterrupted_run(
    js: JetStreamContext, settings: Settings, tmp_path: Path
) -> None:
    rng = random.Random(20261121)
    load = _load(110, rng)
    total = sum(len(e) for e in load.values())
    assert 9_000 <= total <= 12_000
    # Interleave the sessions, as concurrent agents would publish them.
    order: list[Event] = []
    queues = [list(reversed(e)) for e in load.values()]
    while queues:
        for q in queues:
            order.append(q.pop())
        queues = [q for q in queues if q]
    start = await next_stream_seq(js)
    reference = archiver(settings, tmp_path, "reference", start, seal_idle=4.0)
    crashing = archiver(settings, tmp_path, "crashing", start, seal_idle=4.0)
    reference.start()
    crashing.start()
    try:

        async def publish() -> None:
            for i in range(0, len(order), 400):
                # Stamped when published, as a producer stamps its events.
                now = time.time_ns()
                await publish_events(
                    js, [msgspec.structs.replace(e, ts=now) for e in order[i : i + 400]]
                )
                await asyncio.sleep(0.05)

        publisher = asyncio.ensure_future(publish())
        for _ in range(5):  # bounded: five crashes, some during the load, some in the catch-up
            await asyncio.sleep(rng.uniform(0.2, 1.0))
            crashing.kill()
            crashing.start()
        await publisher
        await asyncio.sleep(rng.uniform(0.1, 0.5))
        crashing.kill()
        crashing.start()
        every = set(load)
        for role in (reference, crashing):
            root = tmp_path / ("reference" if role is reference else "crashing")
            await wait_until(
                lambda r=root: sealed(r, every), 60, f"every session sealed in {root.name}"
            )
    finally:
        assert reference.stop() == 0, reference.output()[-3000:]
        assert crashing.stop() == 0, crashing.output()[-3000:]
    assert crashing.starts == 7
    ref = {
        p.relative_to(tmp_path / "reference"): p.read_bytes()
        for p in iter_archive(tmp_path / "reference")
    }
    got = {
        p.relative_to(tmp_path / "crashing"): p.read_bytes()
        for p in iter_archive(tmp_path / "crashing")
    }
    assert len(ref) == len(load) and sorted(got) == sorted(ref)
    different = [str(p) for p in ref if got[p] != ref[p]]
    assert not different, different[:5]
    assert all(verify_file(tmp_path / "crashing" / p).ok for p in got)
    assert not (tmp_path / "crashing" / "_rejected.jsonl").exists()


async def next_partitioned_seq(js: JetStreamContext, settings: Settings, partitions: int) -> int:
    """Where a consumer of the partitioned stream starts to see only what this test publishes.

    That stream numbers its messages itself. Created after another test
    purged some of AGENTCAST_EVENTS, it holds fewer, so AGENTCAST_EVENTS' next
    sequence would start past this test's events: the sequence is read from
    the stream, after a marker event has gone through it.
    """
    await ensure_source(js, settings, 0, partitions, unique_name("probe"))
    marker = unique_session("mark")
    await publish_events(js, build_events(marker, [RunQueuedData(prompt="marker")]))
    subject = f"{ARCHIVE_PREFIX}.{partition_of(marker, partitions)}.{marker}.run.queued"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            return (await js.get_last_msg(stream_name(partitions), subject)).seq + 1
        except NotFoundError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"the marker never reached {stream_name(partitions)}")


async def test_two_archivers_share_the_sessions_and_never_write_the_same_one(
    js: JetStreamContext, settings: Settings, tmp_path: Path
) -> None:
    start = await next_partitioned_seq(js, settings, 2)
    base = unique_name("pair")
    roles = []
    for i in (0, 1):
        role = archiver(
            settings, tmp_path, f"p{i}", start, "--partitions", "2", "--partition", str(i)
        )
        role.env["AGENTCAST_ARCHIVE_CONSUMER"] = base
        roles.append(role)
    load = {s: build_events(s, simple_run(3)) for s in (unique_session("pair") for _ in range(40))}
    try:
        roles[0].start()
        roles[1].start()
        # A second process for partition 0 on the same directory is refused.
        twin = archiver(settings, tmp_path, "p0", start, "--partitions", "2", "--partition", "0")
        twin.env["AGENTCAST_ARCHIVE_CONSUMER"] = base
        refused = await cli(*twin.cmd[3:], env=twin.env)
        assert refused.returncode == 1 and "is owned by" in refused.stderr
        cursors = {s: await publish_events(js, events) for s, events in load.items()}

        def written(i: int) -> set[str | None]:
            return {session_of(p) for p in iter_archive(tmp_path / f"p{i}")}

        await wait_until(
            lambda: (
                written(0) | written(1) >= set(load)
                and sealed(tmp_path / "p0", written(0) & set(load))
                and sealed(tmp_path / "p1", written(1) & set(load))
            ),
            60,
            "every session archived and sealed by one of the two",
        )
    finally:
        codes = [r.stop() for r in roles]
    assert codes == [0, 0], [r.output()[-2000:] for r in roles]
    mine = [written(i) & set(load) for i in (0, 1)]
    assert mine[0] and mine[1] and not mine[0] & mine[1]
    assert mine[0] | mine[1] == set(load)
    for i in (0, 1):
        assert {partition_of(s, 2) for s in mine[i]} == {i}
        for path in iter_archive(tmp_path / f"p{i}"):
            session = session_of(path)
            if session in load:
                assert verify_file(path).ok
                body = records(path)[:-1]
                assert [r["seq"] for r in body] == list(range(1, len(load[session]) + 1))
                assert [r["cursor"] for r in body] == [str(c) for c in cursors[session]]
    # The partitioned stream must not answer direct gets meant for AGENTCAST_EVENTS.
    last = next(iter(load))
    for _ in range(20):
        got = await js.get_last_msg(
            EVENTS_STREAM, f"agentcast.evt.{last}.run.completed", direct=True
        )
        assert got.seq == cursors[last][-1]


async def test_a_lease_is_exclusive_until_released(js: JetStreamContext, tmp_path: Path) -> None:
    name = unique_name("lease")
    first = Lease(js, name, tmp_path / "a", ttl_s=10)
    await first.acquire(wait_s=1)
    elsewhere = Lease(js, name, tmp_path / "b", ttl_s=10)
    with pytest.raises(LeaseHeld, match="owned by pid"):
        await elsewhere.acquire(wait_s=0.3)
    same_dir = Lease(js, name, tmp_path / "a", ttl_s=10)
    with pytest.raises(LeaseHeld, match="another process"):
        await same_dir.acquire(wait_s=0.3)
    await first.release()
    await elsewhere.acquire(wait_s=1)
    assert elsewhere.valid()
    await elsewhere.release()


def test_archive_events_keep_unknown_fields_and_types() -> None:
    # The archive keeps the envelope as published: a newer producer's fields are not lost.
    envelope = {
        "v": 1,
        "id": "x",
        "session": "s",
        "run": 1,
        "seq": 1,
        "ts": 1,
        "type": "new.kind",
        "data": {},
        "extra": [1],
    }
    canonical = chain.canonical({**envelope, "cursor": "9"})
    assert json.loads(canonical)["extra"] == [1]
