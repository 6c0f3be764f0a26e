"""format=ag-ui against real runs (the real Claude CLI on the scripted model), checked by AG-UI's
own validators: verifyEvents + the zod schemas of @ag-ui/core (Node), ag_ui.core.Event (Python)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from agentcast.settings import Settings
from tests.support.formats import (
    Message,
    agui_python_check,
    cancel_once_streaming,
    drop_after,
    messages,
    node_check,
    read_raw,
)
from tests.support.gateway import auth
from tests.support.scripted import ScriptedModel
from tests.support.worker import follow, running_worker, submit, worker_settings

AGUI = {"format": "ag-ui"}
PRELUDE = {"RUN_STARTED", "MESSAGES_SNAPSHOT", "STEP_STARTED", "TEXT_MESSAGE_START",
           "TEXT_MESSAGE_CONTENT", "REASONING_START", "REASONING_MESSAGE_START",
           "REASONING_MESSAGE_CONTENT", "TOOL_CALL_START", "TOOL_CALL_ARGS",
           "SUBAGENT_STARTED"}  # fmt: skip


@pytest.fixture(scope="module")
async def model() -> AsyncIterator[ScriptedModel]:
    async with ScriptedModel(speed=0.05) as scripted:
        yield scripted


def run_over(found: list[Message]) -> bool:
    return found[-1].json["type"] in ("RUN_FINISHED", "RUN_ERROR")


def valid(tmp: Path, *bodies: bytes) -> list[list[str]]:
    """Each body passes verifyEvents + zod and ag_ui's models; their event types."""
    for result in node_check("verify-agui.mjs", tmp, *bodies):
        assert result["ok"], result
    return [agui_python_check(body) for body in bodies]


async def test_a_real_run_with_a_sub_agent_is_valid_ag_ui(
    nc: Client, js: JetStreamContext, settings: Settings, model: ScriptedModel,
    http: httpx.AsyncClient, tmp_path: Path, session_id: str,
) -> None:  # fmt: skip
    async with running_worker(nc, worker_settings(settings, tmp_path, model.url)):
        await submit(js, session_id, "[scenario:subagent] delegate a shell check")
        events = await follow(js, session_id)
    assert events[-1].type == "run.completed"
    path = f"/v1/sessions/{session_id}/events"
    response, body = await read_raw(http, path, params=AGUI, headers=auth(), until=run_over)
    assert response.headers["content-type"].startswith("text/event-stream")
    [types] = valid(tmp_path, body)
    assert types[0] == "RUN_STARTED" and types[-1] == "RUN_FINISHED"
    for kind in (
        "SUBAGENT_STARTED",
        "SUBAGENT_FINISHED",
        "REASONING_START",
        "STEP_STARTED",
        "TEXT_MESSAGE_CONTENT",
        "TOOL_CALL_ARGS",
        "TOOL_CALL_RESULT",
        "CUSTOM",
        "RAW",
    ):
        assert kind in types, kind  # fmt: skip
    found = [m.json for m in messages(body)]
    sub = next(e for e in found if e["type"] == "SUBAGENT_STARTED")["subagentRunId"]
    inside = [e["type"] for e in found if e.get("subagentRunId") == sub]
    assert "TOOL_CALL_START" in inside and "TOOL_CALL_RESULT" in inside
    finished = found[-1]
    assert finished["runId"] == f"{session_id}:1" and finished["threadId"] == session_id
    assert finished["usage"][0]["inputTokens"] >= finished["usage"][0]["cachedInputTokens"]
    assert finished["usage"][0]["outputTokens"] > 0
    # Every message names the cursor of its event: ids never go back.
    ids = [int(m.id) for m in messages(body) if m.id]
    assert ids == sorted(ids)
    streamed = "".join(e["delta"] for e in found if e["type"] == "TEXT_MESSAGE_CONTENT")
    completed = "".join(e.data["text"] for e in events if e.type == "text.completed"
                        and e.parent_tool_use_id is None)  # fmt: skip
    assert streamed == completed

    # The same stream when Accept names AG-UI, and from the firehose of that one session.
    accept = {**auth(), "Accept": "application/vnd.ag-ui.event+json"}
    _, by_accept = await read_raw(http, path, headers=accept, until=run_over)
    _, firehose = await read_raw(
        http, "/v1/events", params={**AGUI, "sessions": session_id}, headers=auth(),
        until=run_over,
    )  # fmt: skip
    assert messages(by_accept) == messages(body) == messages(firehose)


async def test_mid_run_join_and_last_event_id_resume_are_valid_and_exact(
    nc: Client, js: JetStreamContext, settings: Settings, model: ScriptedModel,
    http: httpx.AsyncClient, tmp_path: Path, session_id: str,
) -> None:  # fmt: skip
    path = f"/v1/sessions/{session_id}/events"
    async with running_worker(nc, worker_settings(settings, tmp_path, model.url)):
        await submit(js, session_id, "[scenario:slow] a long answer please")
        # A viewer that drops mid-run, while the run streams.
        first, cut = await drop_after(http, path, AGUI, 60)
        # It reconnects with Last-Event-ID; another joins at an earlier cursor.
        _, resumed = await read_raw(
            http, path, params=AGUI, headers={**auth(), "Last-Event-ID": cut}, until=run_over
        )
        joined_at = messages(first)[30].id
        assert joined_at is not None
        _, joined = await read_raw(
            http, path, params={**AGUI, "from": joined_at}, headers=auth(), until=run_over
        )
        await follow(js, session_id)
    _, whole = await read_raw(http, path, params=AGUI, headers=auth(), until=run_over)
    types_first, types_resumed, types_joined, _ = valid(tmp_path, first + b"", resumed, joined,
                                                        whole)  # fmt: skip
    for got, at in ((resumed, cut), (joined, joined_at)):
        found = messages(got)
        prelude = [m for m in found if int(m.id or 0) <= int(at)]
        assert [m.json["type"] for m in prelude][:2] == ["RUN_STARTED", "MESSAGES_SNAPSHOT"]
        assert {m.json["type"] for m in prelude} <= PRELUDE and {m.id for m in prelude} == {at}
        # After the prelude: exactly what the uninterrupted stream has after the cursor.
        after = [m for m in messages(whole) if int(m.id or 0) > int(at)]
        assert found[len(prelude) :] == after
    assert messages(first) == messages(whole)[: len(messages(first))]
    assert types_first[0] == "RUN_STARTED" and types_resumed[-1] == types_joined[-1]


async def test_cancelled_and_failed_runs_in_one_stream(
    nc: Client, js: JetStreamContext, settings: Settings, model: ScriptedModel,
    http: httpx.AsyncClient, tmp_path: Path, session_id: str,
) -> None:  # fmt: skip
    path = f"/v1/sessions/{session_id}/events"
    ws = worker_settings(settings, tmp_path, model.url, session_hold_s=0.1)
    async with running_worker(nc, ws):
        await submit(js, session_id, "[scenario:slow] a long answer please")
        await cancel_once_streaming(nc, http, path, AGUI, "TEXT_MESSAGE_CONTENT")
        await follow(js, session_id)
        await submit(js, session_id, "[scenario:api_error] this will fail")
        await follow(js, session_id, runs=2)
    _, body = await read_raw(
        http, path, params=AGUI, headers=auth(),
        until=lambda found: found[-1].json["type"] == "RUN_ERROR",
    )  # fmt: skip
    [types] = valid(tmp_path, body)
    found = [m.json for m in messages(body)]
    ends = [e for e in found if e["type"] in ("RUN_FINISHED", "RUN_ERROR")]
    assert [e["type"] for e in ends] == ["RUN_FINISHED", "RUN_ERROR"]
    assert ends[0]["outcome"] == {"type": "cancelled"} and ends[0]["runId"] == f"{session_id}:1"
    assert ends[1]["code"] == "api_error" and ends[1]["message"]
    assert types.count("RUN_STARTED") == 2


async def test_many_live_viewers_get_the_same_valid_stream(
    nc: Client, js: JetStreamContext, settings: Settings, model: ScriptedModel,
    http: httpx.AsyncClient, tmp_path: Path, session_id: str,
) -> None:  # fmt: skip
    """Viewers of one session share one live translation (gateway/formats/shared.py): whoever
    joins when, from the start or mid-run, each stream is its own valid AG-UI stream."""
    path = f"/v1/sessions/{session_id}/events"
    async with running_worker(nc, worker_settings(settings, tmp_path, model.url)):
        await submit(js, session_id, "[scenario:slow] a long answer please")
        viewers = [
            asyncio.create_task(read_raw(http, path, params=AGUI, headers=auth(), until=run_over))
            for _ in range(12)
        ]
        first, cut = await drop_after(http, path, AGUI, 40)
        joiners = [
            asyncio.create_task(
                read_raw(http, path, params={**AGUI, "from": cut}, headers=auth(), until=run_over)
            )
            for _ in range(4)
        ]
        bodies = [body for _, body in await asyncio.gather(*viewers, *joiners)]
        await follow(js, session_id)
    whole = messages(bodies[0])
    assert all(messages(body) == whole for body in bodies[:12])
    assert all(messages(body) == messages(bodies[12]) for body in bodies[12:])
    valid(tmp_path, bodies[0], bodies[12])
    assert messages(first) == whole[: len(messages(first))]
