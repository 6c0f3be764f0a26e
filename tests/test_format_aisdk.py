"""format=ai-sdk against real runs, checked as DefaultChatTransport reads a stream: ai 6's
parseJsonEventStream + uiMessageChunkSchema, folded by readUIMessageStream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from agentcast.settings import Settings
from tests.support.formats import cancel_once_streaming, drop_after, messages, node_check, read_raw
from tests.support.gateway import auth
from tests.support.scripted import ScriptedModel
from tests.support.worker import follow, running_worker, submit, worker_settings

AI_SDK = {"format": "ai-sdk"}
DONE = b"data: [DONE]\n\n"


@pytest.fixture(scope="module")
async def model() -> AsyncIterator[ScriptedModel]:
    async with ScriptedModel(speed=0.05) as scripted:
        yield scripted


def valid(tmp: Path, *streams: bytes | tuple[bytes, ...]) -> list[dict[str, Any]]:
    results = node_check("verify-aisdk.mjs", tmp, *streams)
    for result in results:
        assert result["ok"], result
    return results


async def test_a_real_run_is_one_valid_ui_message_stream(
    nc: Client, js: JetStreamContext, settings: Settings, model: ScriptedModel,
    http: httpx.AsyncClient, tmp_path: Path, session_id: str,
) -> None:  # fmt: skip
    async with running_worker(nc, worker_settings(settings, tmp_path, model.url)):
        await submit(js, session_id, "[scenario:subagent] delegate a shell check")
        events = await follow(js, session_id)
    path = f"/v1/sessions/{session_id}/events"
    response, body = await read_raw(http, path, params=AI_SDK, headers=auth())  # ends by itself
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert response.headers["content-type"].startswith("text/event-stream")
    assert body.endswith(DONE) and body.count(DONE) == 1
    assert all(m.id is not None for m in messages(body))
    [result] = valid(tmp_path, body)
    assert result["id"] == f"{session_id}:1"
    for part in ("step-start", "reasoning", "text", "dynamic-tool", "data-subagent", "data-task"):
        assert part in result["parts"], part
    assert result["types"][0] == "start" and result["types"][-1] == "finish"
    assert result["text"] == "".join(
        e.data["text"] for e in events if e.type == "text.completed" and not e.parent_tool_use_id
    )
    # No run is active now: the resume route says so.
    done = await http.get(f"/v1/sessions/{session_id}/stream", headers=auth())
    assert done.status_code == 204
    many = await http.get("/v1/events", params=AI_SDK, headers=auth())
    assert many.status_code == 400 and many.json()["error"]["code"] == "invalid_format"
    typed = await http.get(path, params={**AI_SDK, "types": "text.delta"}, headers=auth())
    assert typed.status_code == 400 and typed.json()["error"]["code"] == "invalid_types"
    wide = await http.get(path, params={"coalesce_ms": "10001"}, headers=auth())
    assert wide.status_code == 422 and wide.json()["error"]["code"] == "invalid_request"
    unknown = await http.get(path, params={"format": "sse"}, headers=auth())
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "invalid_format"


async def test_resume_route_replays_the_active_run_and_last_event_id_continues_it(
    nc: Client, js: JetStreamContext, settings: Settings, model: ScriptedModel,
    http: httpx.AsyncClient, tmp_path: Path, session_id: str,
) -> None:  # fmt: skip
    path = f"/v1/sessions/{session_id}/events"
    async with running_worker(nc, worker_settings(settings, tmp_path, model.url)):
        await submit(js, session_id, "[scenario:slow] a long answer please")
        first, cut = await drop_after(http, path, AI_SDK, 50)
        # While the run streams: useChat({resume: true}) after a reload, and a client that
        # kept its message and continues after its Last-Event-ID.
        (status, replayed), (_, rest) = await asyncio.gather(
            read_raw(http, f"/v1/sessions/{session_id}/stream", headers=auth()),
            read_raw(http, path, params=AI_SDK, headers={**auth(), "Last-Event-ID": cut}),
        )
        assert status.status_code == 200
        assert status.headers["x-vercel-ai-ui-message-stream"] == "v1"
        await follow(js, session_id)
    _, whole = await read_raw(http, path, params=AI_SDK, headers=auth())
    replay, joined, uncut = valid(tmp_path, replayed, (first, rest), whole)
    assert replay == {**uncut, "file": replay["file"]}
    assert joined == {**uncut, "file": joined["file"]}
    assert messages(first) + messages(rest) == messages(whole) == messages(replayed)
    _, by_number = await read_raw(
        http, f"/v1/sessions/{session_id}/stream", params={"run": "1"}, headers=auth()
    )
    assert messages(by_number) == messages(whole)


async def test_cancelled_run_aborts_and_a_failed_run_errors(
    nc: Client, js: JetStreamContext, settings: Settings, model: ScriptedModel,
    http: httpx.AsyncClient, tmp_path: Path, session_id: str,
) -> None:  # fmt: skip
    path = f"/v1/sessions/{session_id}/events"
    ws = worker_settings(settings, tmp_path, model.url, session_hold_s=0.1)
    async with running_worker(nc, ws):
        await submit(js, session_id, "[scenario:slow] a long answer please")
        await cancel_once_streaming(nc, http, path, AI_SDK, "text-delta")
        await follow(js, session_id)
        # Run 2 is asked for before it exists: the route waits for it.
        second = asyncio.create_task(
            read_raw(http, f"/v1/sessions/{session_id}/stream", params={"run": "2"}, headers=auth())
        )
        await asyncio.sleep(0)
        await submit(js, session_id, "[scenario:api_error] this will fail")
        await follow(js, session_id, runs=2)
        _, failed = await second
    _, cancelled = await read_raw(http, path, params=AI_SDK, headers=auth())
    aborted, errored = valid(tmp_path, cancelled, failed)
    assert aborted["types"][-1] == "abort" and cancelled.endswith(DONE)
    assert errored["errorText"] and failed.endswith(DONE)
    chunks = [m.json for m in messages(failed) if m.data != "[DONE]"]
    assert chunks[0]["messageId"] == f"{session_id}:2"
    assert chunks[-1] == {"type": "finish", "finishReason": "error"}
