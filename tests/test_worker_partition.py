"""Workers cut off from NATS (a TCP proxy between one worker and the server, cut and healed).

The cut-off worker is presumed lost and its runs closed by a survivor; when it
comes back it writes nothing more (its publishes expect the session's last
stream sequence), and it puts back the records of sessions it still holds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from nats.js.errors import KeyNotFoundError

from agentcast.codec import encode
from agentcast.control import ControlRequest
from agentcast.subjects import (
    EVENTS_STREAM,
    ctl_subject,
)
from producer.worker_leases import RUNNING_BUCKET
from tests.support.nats import PrivateNats
from tests.support.proxy import Partition
from tests.support.roles import unique_name, wait_until
from tests.support.scripted import ScriptedModel
from tests.support.worker import (
    follow,
    processes_in,
    submit,
    worker_role,
)
from tests.support.worker_loss import (
    LOST_AFTER_S,
    SLACK_S,
    as_worker,
    no_cli_left,
    stop_all,
    streaming,
    wait_for_value,
)

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
async def model() -> AsyncIterator[ScriptedModel]:
    """Paced so that the slow scenario lasts long enough to be killed in the middle."""
    async with ScriptedModel(speed=0.5) as scripted:
        yield scripted


async def test_a_worker_cut_off_from_nats_is_lost_and_writes_nothing_when_it_comes_back(
    private_nats: PrivateNats, tmp_path: Path, model: ScriptedModel
) -> None:
    settings = as_worker(private_nats)
    js = private_nats.nc.jetstream()
    target = urlparse(str(settings.nats_url))
    assert target.hostname and target.port
    partition = Partition(target.hostname, target.port)
    await partition.start()
    cut_off = worker_role(
        settings.replace(nats_url=partition.url),
        tmp_path,
        "x",
        model.url,
        worker_lost_after_s=LOST_AFTER_S,
    )
    survivor = worker_role(settings, tmp_path, "y", model.url, worker_lost_after_s=LOST_AFTER_S)
    session = unique_name("cut")
    try:
        await asyncio.to_thread(cut_off.start)  # the proxy serves it from this loop
        await submit(js, session, "[scenario:slow] a long answer please")
        await streaming(js, session)
        await asyncio.to_thread(survivor.start)
        following = asyncio.create_task(follow(js, session, timeout=120))
        partition.cut()
        events = await following
        assert events[-1].type == "run.failed" and events[-1].data["kind"] == "worker_lost"
        lost_seq = events[-1].seq

        # It comes back: its next event is refused (one writer per session), so it stops its agent.
        partition.heal()
        await no_cli_left(tmp_path / "x" / "workspaces" / session)
        last = await js.get_last_msg(EVENTS_STREAM, f"agentcast.evt.{session}.>", direct=True)
        assert json.loads(last.data or b"{}")["seq"] == lost_seq
    finally:
        await asyncio.to_thread(stop_all, cut_off, survivor)
        await partition.stop()


async def test_a_worker_back_from_a_cut_during_the_hold_is_found_again_when_it_dies(
    private_nats: PrivateNats, tmp_path: Path, model: ScriptedModel
) -> None:
    settings = as_worker(private_nats)
    nc, js = private_nats.nc, private_nats.nc.jetstream()
    target = urlparse(str(settings.nats_url))
    assert target.hostname and target.port
    partition = Partition(target.hostname, target.port)
    await partition.start()
    held = worker_role(
        settings.replace(nats_url=partition.url),
        tmp_path,
        "x",
        model.url,
        worker_lost_after_s=LOST_AFTER_S,
        session_hold_s=300,
    )
    survivor = worker_role(settings, tmp_path, "y", model.url, worker_lost_after_s=LOST_AFTER_S)
    session = unique_name("hold")

    async def recorded() -> bool:
        try:
            await (await js.key_value(RUNNING_BUCKET)).get(session)
        except KeyNotFoundError:
            return False
        return True

    try:
        await asyncio.to_thread(held.start)
        await asyncio.to_thread(survivor.start)
        await submit(js, session, "[scenario:quick] remember the word pelican")
        await follow(js, session)
        assert await recorded()
        # Cut off while it holds the session (no run open): presumed lost, its record freed.
        partition.cut()
        await wait_for_value(recorded, False, LOST_AFTER_S + SLACK_S)
        # Back: it still holds the session, so it puts its record back...
        partition.heal()
        await wait_for_value(recorded, True, LOST_AFTER_S + SLACK_S)
        reply = await nc.request(
            ctl_subject(session),
            encode(ControlRequest(op="message", text="[scenario:slow] a long follow-up")),
            timeout=10,
        )
        assert json.loads(reply.data)["ok"] is True
        await wait_until(
            lambda: bool(processes_in(tmp_path / "x" / "workspaces" / session)), 60, "run 2 on x"
        )
        # ...and when it dies in its next run, that run is found and closed too.
        held.kill()
        events = await follow(js, session, runs=2, timeout=120)
    finally:
        await asyncio.to_thread(stop_all, held, survivor)
        await partition.stop()
    assert events[-1].run == 2 and events[-1].type == "run.failed"
    assert events[-1].data["kind"] == "worker_lost"
