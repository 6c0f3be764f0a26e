"""Workers that die: kill -9 of real `agentcast worker` processes, a real nats-server, the real CLI.

Every wait is bounded; the bound on worker loss is asserted only loosely
(a small configured `worker_lost_after_s`, plenty of slack for a loaded machine).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import KeyNotFoundError, NoKeysError

from agentcast.embedded import free_port
from agentcast.events import TERMINAL_TYPES
from agentcast.progress import decode_snapshot
from agentcast.subjects import (
    RUNS_STREAM,
    RUNS_SUBMIT,
    SESSIONS_BUCKET,
)
from producer.worker import WORKERS_DURABLE
from producer.worker_leases import RUNNING_BUCKET
from tests.support.nats import PrivateNats, role_env
from tests.support.roles import Role, unique_name, wait_until
from tests.support.scripted import ScriptedModel
from tests.support.worker import (
    follow,
    processes_in,
    running_worker,
    submit,
    worker_role,
    worker_settings,
)
from tests.support.worker_loss import (
    LOST_AFTER_S,
    SLACK_S,
    as_worker,
    no_cli_left,
    stop_all,
    streaming,
    wait_for_value,
    worker_client,
)

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
async def model() -> AsyncIterator[ScriptedModel]:
    """Paced so that the slow scenario lasts long enough to be killed in the middle."""
    async with ScriptedModel(speed=0.5) as scripted:
        yield scripted


def _runner(workers: dict[str, Role], tmp: Path, session: str) -> str:
    """Which worker runs the session: the one whose workspace holds its CLI."""
    found = [name for name in workers if processes_in(tmp / name / "workspaces" / session)]
    assert len(found) == 1, found
    return found[0]


def _terminals(events: list, run: int) -> list:
    return [e for e in events if e.run == run and e.type in TERMINAL_TYPES]


async def _records(js: JetStreamContext) -> list[str]:
    kv = await js.key_value(RUNNING_BUCKET)
    try:
        return await kv.keys()
    except NoKeysError:
        return []


async def test_kill_9_mid_run_one_worker_lost_failure_the_survivor_takes_the_queue(
    private_nats: PrivateNats, tmp_path: Path, model: ScriptedModel
) -> None:
    settings = as_worker(private_nats)
    js = private_nats.nc.jetstream()
    workers = {
        name: worker_role(settings, tmp_path, name, model.url, worker_lost_after_s=LOST_AFTER_S)
        for name in ("x", "y")
    }
    metrics_port = free_port()
    metrics = Role(
        "metrics",
        [
            "--nats",
            private_nats.server.url,
            "--data",
            str(tmp_path / "metrics"),
            "--metrics-port",
            str(metrics_port),
        ],
        {
            **role_env(private_nats.server, "metrics"),
            "AGENTCAST_PROGRESS_INTERVAL_S": "0.05",
        },
        tmp_path / "metrics.log",
        "Metrics ready",
    )
    lost, busy, queued = unique_name("lost"), unique_name("busy"), unique_name("queued")
    try:
        metrics.start()
        for role in workers.values():
            role.start()
        # Both workers busy (one agent each), then one more request waits in the queue.
        await submit(js, lost, "[scenario:slow] a long answer please")
        await streaming(js, lost)
        await submit(js, busy, "[scenario:slow] another long answer")
        await streaming(js, busy)
        await submit(js, queued, "[scenario:quick] hi")
        dead = _runner(workers, tmp_path, lost)
        survivor = next(name for name in workers if name != dead)
        following = asyncio.create_task(follow(js, lost, timeout=120))

        workers[dead].kill()
        killed_at = time.monotonic()
        await no_cli_left(tmp_path / dead / "workspaces" / lost)  # the CLI died with it

        events = await following
        closed_after = time.monotonic() - killed_at
        assert events[-1].type == "run.failed" and events[-1].data["kind"] == "worker_lost"
        assert closed_after < LOST_AFTER_S + SLACK_S
        # The survivor finishes its own run, then takes the queued request.
        assert (await follow(js, busy, timeout=120))[-1].type == "run.completed"
        assert (await follow(js, queued, timeout=120))[-1].type == "run.completed"
        assert processes_in(tmp_path / survivor / "workspaces" / queued) == []

        # The lost run was closed once; the session works again, on the survivor.
        await submit(js, lost, "[scenario:quick] are you there?")
        events = await follow(js, lost, runs=2, timeout=120)
        assert len(_terminals(events, 1)) == 1
        assert events[-1].type == "run.completed" and events[-1].run == 2
        assert [e.seq for e in events] == list(range(1, len(events) + 1))

        # The snapshot of the lost run left `running`: it says failed (then run 2 completed).
        kv = await js.key_value(SESSIONS_BUCKET)

        async def snapshot_state() -> str:
            try:
                entry = await kv.get(lost)
            except KeyNotFoundError:
                return ""
            return decode_snapshot(entry.value or b"").state

        await wait_for_value(snapshot_state, "completed", 30)
        await wait_for_value(lambda: _records(js), [], 30)
    finally:
        stop_all(*workers.values(), metrics)
    assert "is lost, closing its run" in workers[survivor].output()


async def test_kill_9_with_no_survivor_the_next_workers_close_the_run_exactly_once(
    private_nats: PrivateNats, tmp_path: Path, model: ScriptedModel
) -> None:
    settings = as_worker(private_nats)
    js = private_nats.nc.jetstream()

    def role(name: str) -> Role:
        return worker_role(settings, tmp_path, name, model.url, worker_lost_after_s=LOST_AFTER_S)

    session = unique_name("alone")
    first = role("x")
    later = [role("y"), role("z")]
    try:
        first.start()
        await submit(js, session, "[scenario:slow] a long answer please")
        await streaming(js, session)
        first.kill()
        await no_cli_left(tmp_path / "x" / "workspaces" / session)
        # Nobody is left to notice. Two new workers start at once and race to close it.
        for worker in later:
            worker.start()
        events = await follow(js, session, timeout=120)
        assert events[-1].type == "run.failed" and events[-1].data["kind"] == "worker_lost"
        await submit(js, session, "[scenario:quick] still there?")
        events = await follow(js, session, runs=2, timeout=120)
    finally:
        stop_all(first, *later)
    assert len(_terminals(events, 1)) == 1
    assert events[-1].type == "run.completed"
    closers = [w for w in later if "is lost, closing its run" in w.output()]
    assert len(closers) >= 1


async def test_a_request_a_dead_worker_had_taken_is_redelivered_to_a_survivor(
    private_nats: PrivateNats, tmp_path: Path, model: ScriptedModel
) -> None:
    settings = as_worker(private_nats).replace(worker_lost_after_s=LOST_AFTER_S)
    session = unique_name("taken")
    # A worker that fetched the request and died before claiming it: its
    # connection goes away with the request unacknowledged.
    async with worker_client(private_nats, "doomed-worker") as doomed:
        sub = await doomed.jetstream().pull_subscribe(
            RUNS_SUBMIT,
            durable=WORKERS_DURABLE,
            stream=RUNS_STREAM,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT, ack_wait=LOST_AFTER_S, max_ack_pending=-1
            ),
        )
        await submit(private_nats.nc.jetstream(), session, "[scenario:quick] do not drop me")
        taken = await sub.fetch(1, timeout=10)
        assert json.loads(taken[0].data)["session"] == session
    js = private_nats.nc.jetstream()
    async with (
        worker_client(private_nats) as nc,
        running_worker(nc, worker_settings(settings, tmp_path, model.url)),
    ):
        events = await follow(js, session, timeout=LOST_AFTER_S + SLACK_S + 30)
    assert events[-1].type == "run.completed"
    assert [e.type for e in events].count("run.queued") == 1


_SLEEPER = {
    "name": "sleeper",
    "description": "A Bash call that outlives its worker unless it is killed with it.",
    "keywords": ["sleeper"],
    "turns": [
        {
            "blocks": [
                {"type": "text", "text": "Starting long commands."},
                # One child in the CLI's process group, one that left it (setsid).
                {
                    "type": "tool_use",
                    "name": "Bash",
                    "input": {"command": "setsid sleep 617 & sleep 613", "description": "Wait"},
                },
            ]
        },
        {"blocks": [{"type": "text", "text": "Done."}]},
    ],
}


async def test_kill_9_mid_tool_call_leaves_no_cli_and_no_tool_process(
    private_nats: PrivateNats, tmp_path: Path
) -> None:
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    (scenarios / "sleeper.json").write_text(json.dumps(_SLEEPER))
    js = private_nats.nc.jetstream()
    session = unique_name("sleeper")
    async with ScriptedModel(speed=0, scenarios_dir=scenarios) as model:
        worker = worker_role(as_worker(private_nats), tmp_path, "x", model.url)
        workspace = tmp_path / "x" / "workspaces" / session
        try:
            worker.start()
            await submit(js, session, "[scenario:sleeper] wait a long time")

            def sleeping() -> bool:
                names = []
                for pid in processes_in(workspace):
                    try:
                        names.append(Path(f"/proc/{pid}/cmdline").read_bytes())
                    except OSError:
                        pass
                return sum(b"sleep\x0061" in name for name in names) == 2

            await wait_until(sleeping, 60, "both sleeps to run")
            worker.kill()
            await no_cli_left(workspace)
        finally:
            worker.stop()
