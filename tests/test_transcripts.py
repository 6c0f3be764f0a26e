"""Conversations resume on any worker: the transcript travels through the object store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.nats import PrivateNats
from tests.support.roles import unique_name
from tests.support.scripted import ScriptedModel
from tests.support.worker import (
    follow,
    running_worker,
    submit,
    worker_settings,
)
from tests.support.worker_loss import as_worker, worker_client

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
async def model() -> AsyncIterator[ScriptedModel]:
    """Paced so that the slow scenario lasts long enough to be killed in the middle."""
    async with ScriptedModel(speed=0.5) as scripted:
        yield scripted


async def test_a_follow_up_resumes_the_conversation_on_another_worker_without_a_shared_disk(
    private_nats: PrivateNats, tmp_path: Path, model: ScriptedModel
) -> None:
    js = private_nats.nc.jetstream()
    session = unique_name("travel")
    first = worker_settings(as_worker(private_nats), tmp_path / "x", model.url, session_hold_s=0.1)
    second = worker_settings(as_worker(private_nats), tmp_path / "y", model.url, session_hold_s=0.1)
    async with worker_client(private_nats) as nc, running_worker(nc, first):
        await submit(js, session, "[scenario:quick] the secret is heron")
        await follow(js, session)
    async with worker_client(private_nats) as nc, running_worker(nc, second):
        await submit(js, session, "[scenario:followup] and the secret?")
        events = await follow(js, session, runs=2)
    assert events[-1].type == "run.completed" and events[-1].run == 2
    bodies = await model.requests()
    resumed = [b for b in bodies if "and the secret?" in json.dumps(b.get("messages", []))]
    assert resumed and "the secret is heron" in json.dumps(resumed[-1]["messages"])
    # The second worker had the transcript from the store, not from the first one's disk.
    restored = list((tmp_path / "y" / "claude" / "projects").rglob("*.jsonl"))
    assert restored and "the secret is heron" in restored[0].read_text()
