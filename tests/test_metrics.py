"""`agentcast metrics` against a real nats-server, as a real process: live snapshots, restarts, /metrics."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import httpx
import msgspec
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError

from agentcast.embedded import free_port
from agentcast.events import Event, MessageCompletedData, RunQueuedData, TextDeltaData
from agentcast.progress import ProgressSnapshot, decode_snapshot
from agentcast.settings import Settings
from agentcast.subjects import SESSIONS_BUCKET
from consumers.archive.partition import partition_of
from consumers.progress.history import History, decode_history
from consumers.progress.learning import Learning
from consumers.progress.reducer import SessionState, new_state
from consumers.progress.service import STATES_BUCKET, _decode_state
from tests.support.events import build_events, publish_events, simple_run, unique_session
from tests.support.nats import PrivateNats
from tests.support.progress import snapshots_after_each
from tests.support.roles import Role, next_stream_seq, unique_name, wait_until
from tests.support.transcript_events import transcript_events

pytestmark = pytest.mark.timeout(90)


def metrics_role(
    settings: Settings,
    tmp: Path,
    start: int,
    port: int,
    interval: float = 0.05,
    consumer: str | None = None,
) -> Role:
    assert settings.nats_url
    env = {
        "AGENTCAST_METRICS_CONSUMER": consumer or unique_name("met"),
        "AGENTCAST_CONSUMER_START_SEQ": str(start),
        "AGENTCAST_PROGRESS_INTERVAL_S": str(interval),
        "AGENTCAST_IDLE_AFTER_S": "600",
    }
    args = ["--nats", settings.nats_url, "--data", str(tmp / "data"), "--metrics-port", str(port)]
    return Role("metrics", args, env, tmp / "metrics.log", "Metrics ready")


class Snapshots:
    """The KV bucket's snapshot of each session."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self.latest: dict[str, ProgressSnapshot] = {}

    async def get(self, session: str) -> ProgressSnapshot | None:
        kv = await self.js.key_value(SESSIONS_BUCKET)
        try:
            entry = await kv.get(session)
        except KeyNotFoundError:
            return None
        return decode_snapshot(entry.value or b"")

    async def wait_seq(self, session: str, seq: int, timeout: float = 20) -> ProgressSnapshot:
        async def reached() -> bool:
            snap = await self.get(session)
            return snap is not None and snap.last_seq >= seq

        deadline = asyncio.get_running_loop().time() + timeout
        while not await reached():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"{session} never reached seq {seq}: {await self.get(session)}"
                )
            await asyncio.sleep(0.02)
        snap = await self.get(session)
        assert snap is not None
        return snap


async def test_plans_step_the_percent_live_a_slow_run_stays_below_100_and_prometheus_counts(
    nc: Client, js: JetStreamContext, settings: Settings, tmp_path: Path
) -> None:
    start = await next_stream_seq(js)
    port = free_port()
    role = metrics_role(settings, tmp_path, start, port)
    kv = Snapshots(js)
    published: dict[str, list[ProgressSnapshot]] = {}

    async def on_progress(msg: object) -> None:
        snap = decode_snapshot(msg.data)  # type: ignore[attr-defined]
        published.setdefault(snap.session, []).append(snap)

    sub = await nc.subscribe("agentcast.progress.>", cb=on_progress)
    role.start()
    try:
        for name in ("coding_todowrite", "coding_tasks"):
            session = unique_session("plan")
            events = transcript_events(name, session)
            expected = snapshots_after_each(events)
            # Publish up to each point where the percent source changes, and every 40 events;
            # the service must agree there, but for what moves with the clock and the history.
            stops = [
                i
                for i in range(len(events))
                if i % 40 == 0 or expected[i].percent_source != expected[i - 1].percent_source
            ]
            stops.append(len(events) - 1)
            done = 0
            seen: list[tuple[float, str]] = []
            for stop in stops:
                await publish_events(js, events[done : stop + 1])
                done = stop + 1
                snap = await kv.wait_seq(session, events[stop].seq)
                assert _settled(snap) == _settled(expected[stop])
                seen.append((snap.percent, snap.percent_source))
            todos = [p for p, source in seen if source == "todos"]
            assert len(todos) >= 3 and todos == sorted(todos) and todos[-1] < 100
            assert seen[-1] == (100.0, "final")
            assert [p for p, _ in seen] == sorted(p for p, _ in seen)

        slow = unique_session("slow")
        events = transcript_events("slow", slow)
        for i in range(0, len(events) - 1, 90):
            chunk = events[i : min(i + 90, len(events) - 1)]
            await publish_events(js, chunk)
            await kv.wait_seq(slow, chunk[-1].seq)
        before_end = list(published[slow])
        await publish_events(js, events[-1:])
        final = await kv.wait_seq(slow, events[-1].seq)
        percents = [s.percent for s in before_end]
        assert len(before_end) >= 5 and percents == sorted(percents) and max(percents) < 100
        assert {s.percent_source for s in before_end} == {"estimate"}
        assert (final.state, final.percent, final.percent_source) == ("completed", 100.0, "final")
        await wait_until(lambda: published[slow][-1] == final, 10, "the final snapshot published")

        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    finally:
        await sub.unsubscribe()
        assert role.stop() == 0, role.output()[-3000:]
    assert 'agentcast_tool_calls_total{tool="TodoWrite"} 4.0' in text
    assert 'agentcast_tool_calls_total{tool="TaskCreate"} 3.0' in text
    assert 'agentcast_events_total{type="run.completed"} 3.0' in text
    assert "agentcast_run_duration_seconds_count 3.0" in text
    assert "agentcast_ttft_seconds_count 3.0" in text
    assert 'agentcast_tool_latency_seconds_count{tool="Bash"} 6.0' in text
    assert (
        'agentcast_sessions{state="completed"}' in text
        and "agentcast_metrics_consumer_lag 0.0" in text
    )
    assert (
        'agentcast_tokens_total{direction="output"}' in text and "agentcast_cost_usd_total" in text
    )


def _settled(snap: ProgressSnapshot | None) -> ProgressSnapshot | None:
    """A snapshot without what moves with the clock while the run goes on."""
    if snap is None or snap.percent_source == "final":
        return snap
    return msgspec.structs.replace(snap, percent=0.0, eta_ms=None, percent_confidence=None)


def _load(rng: random.Random) -> dict[str, list[Event]]:
    load: dict[str, list[Event]] = {}
    for i in range(30):
        session = unique_session("mload")
        events = build_events(session, simple_run(n_text=rng.randint(5, 60), prompt=f"p{i}"))
        if i % 4 == 0:
            more = [
                RunQueuedData(prompt="again"),
                TextDeltaData(index=0, text="x" * i),
                MessageCompletedData(),
            ]
            events += build_events(session, more, run=2, first_seq=len(events) + 1)
        load[session] = events
    for _ in range(2):  # the second may weigh its plan items by the first's
        recorded = unique_session("mrec")
        load[recorded] = transcript_events("coding_tasks", recorded)
    return load


def _replayed(
    order: list[Event], positions: list[int], consumer: str
) -> tuple[dict[str, SessionState], History]:
    """The pure reducer and history over the stream, in stream order, each event once."""
    learning = Learning(consumer)
    states: dict[str, SessionState] = {}
    for event, position in zip(order, positions, strict=True):
        state = states.get(event.session) or new_state(event.session)
        states[event.session] = learning.apply(state, event, position)
    return states, learning.history


async def _stored(js: JetStreamContext, key: str) -> bytes:
    kv = await js.key_value(STATES_BUCKET)
    entry = await kv.get(key)
    return entry.value or b""


async def test_snapshots_and_the_learned_history_survive_kill_9_and_a_restart_exactly(
    js: JetStreamContext, settings: Settings, tmp_path: Path
) -> None:
    rng = random.Random(7)
    load = _load(rng)
    # Sessions interleaved at random, each in its own seq order, as concurrent agents publish.
    lanes = [list(reversed(events)) for events in load.values()]
    order: list[Event] = []
    while lanes:
        lane = rng.choice(lanes)
        order.append(lane.pop())
        lanes = [lane for lane in lanes if lane]
    start = await next_stream_seq(js)
    # A slow commit period, so that the kills land between applying and acking.
    consumer = unique_name("met")
    role = metrics_role(settings, tmp_path, start, free_port(), interval=0.5, consumer=consumer)
    kv = Snapshots(js)
    positions: list[int] = []
    role.start()
    try:
        for i in range(0, len(order), 300):
            positions += await publish_events(js, order[i : i + 300])
            if i // 300 in (1, 3):  # bounded: two crashes while the load arrives
                await asyncio.sleep(rng.uniform(0.05, 0.2))
                role.kill()
                role.start()
        for session, events in load.items():
            await kv.wait_seq(session, events[-1].seq)
        before = {s: await kv.get(s) for s in load}
        for session, events in load.items():
            # Runs left open move with the clock and the history: their states are compared below.
            assert _settled(before[session]) == _settled(snapshots_after_each(events)[-1]), session
        # The states, priors and learned history are those of one pass over the stream.
        states, history = _replayed(order, positions, consumer)
        assert history.runs and history.items
        for session in load:
            assert _decode_state(await _stored(js, session)) == states[session], session
        assert decode_history(await _stored(js, "history." + consumer)) == history
        role.kill()
        role.start()
        # A follow-up run after the restart continues from the stored state.
        first = next(iter(load))
        follow = build_events(first, simple_run(2), run=3, first_seq=len(load[first]) + 1)
        follow_positions = await publish_events(js, follow)
        after_follow = await kv.wait_seq(first, follow[-1].seq)
        assert after_follow == snapshots_after_each(load[first] + follow)[-1]
        # The follow-up run's prior came from the history restored from the KV.
        states, history = _replayed(order + follow, positions + follow_positions, consumer)
        for _ in range(200):  # bounded: the state is stored right after its snapshot
            if _decode_state(await _stored(js, first)) == states[first]:
                break
            await asyncio.sleep(0.05)
        assert _decode_state(await _stored(js, first)) == states[first]
        assert states[first].prior.source == "all" and states[first].prior.runs > 10
        assert decode_history(await _stored(js, "history." + consumer)) == history
        after = {s: await kv.get(s) for s in load if s != first}
    finally:
        assert role.stop() == 0, role.output()[-3000:]
    assert {s: _settled(v) for s, v in after.items()} == {s: _settled(before[s]) for s in after}
    assert role.starts == 4
    wire = json.loads(msgspec.json.encode(after_follow))
    assert wire["run"] == 3 and wire["percent_source"] == "final"


async def test_two_metrics_partitions_share_the_sessions_each_owned_by_one_exactly(
    private_nats: PrivateNats, tmp_path: Path
) -> None:
    js = private_nats.nc.jetstream()
    ports = [free_port(), free_port()]

    def partition(i: int) -> Role:
        args = ["--nats", private_nats.server.admin_url, "--data", str(tmp_path / "data"),
                "--metrics-port", str(ports[i]), "--partitions", "2", "--partition", str(i)]  # fmt: skip
        env = {"AGENTCAST_PROGRESS_INTERVAL_S": "0.05", "AGENTCAST_IDLE_AFTER_S": "600"}
        return Role("metrics", args, env, tmp_path / f"metrics{i}.log", "Metrics ready")

    roles = [partition(0), partition(1)]
    load = {
        s: build_events(s, simple_run(3 + i % 4))
        for i in range(24)
        if (s := unique_session("part"))
    }
    mine = [[s for s in load if partition_of(s, 2) == i] for i in range(2)]
    assert all(mine), "both partitions get sessions"
    kv = Snapshots(js)
    for role in roles:
        role.start()
    try:
        items = list(load.items())
        for session, events in items[:12]:
            await publish_events(js, events)
        roles[1].kill()  # a crash of one partition while the load arrives
        roles[1].start()
        for session, events in items[12:]:
            await publish_events(js, events)
        for session, events in load.items():
            assert await kv.wait_seq(session, events[-1].seq) == snapshots_after_each(events)[-1]
        async with httpx.AsyncClient() as http:
            held = []
            for port in ports:
                text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                held.append(_gauge_sum(text, "agentcast_sessions"))
    finally:
        codes = [role.stop() for role in roles]
    assert codes == [0, 0], [role.output()[-2000:] for role in roles]
    # Each process holds exactly its partition's sessions.
    assert held == [len(mine[0]), len(mine[1])]


def _gauge_sum(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{")
    )
