"""The worker pool against a real nats-server and the real Claude Code CLI (scripted model)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from agentcast.bus import connect, disconnect
from agentcast.codec import encode, json_decoder
from agentcast.control import ControlRequest
from agentcast.settings import Settings
from agentcast.subjects import RUNS_REJECTED, RUNS_SUBMIT, ctl_subject
from tests.support.nats import PrivateNats
from tests.support.scripted import ScriptedModel
from tests.support.worker import follow, processes_in, running_worker, submit, worker_settings


@pytest.fixture(scope="module")
async def model() -> AsyncIterator[ScriptedModel]:
    async with ScriptedModel(speed=0) as scripted:
        yield scripted


@pytest.fixture(scope="module")
async def slow_model() -> AsyncIterator[ScriptedModel]:
    """Realistic pacing sped up: the slow scenario then lasts a few seconds."""
    async with ScriptedModel(speed=0.15) as scripted:
        yield scripted


def types_of(events: list) -> list[str]:
    return [e.type for e in events]


async def test_tool_run_publishes_the_whole_story_in_order(
    nc: Client,
    js: JetStreamContext,
    settings: Settings,
    model: ScriptedModel,
    tmp_path: Path,
    session_id: str,
) -> None:
    async with running_worker(nc, worker_settings(settings, tmp_path, model.url)):
        await submit(js, session_id, "[scenario:bash] say hello from the shell")
        events = await follow(js, session_id)
    types = types_of(events)
    assert types[0] == "run.queued" and types[-1] == "run.completed"
    for expected in [
        "run.started",
        "text.delta",
        "tool.started",
        "tool.input.delta",
        "tool.called",
        "tool.result",
        "message.completed",
    ]:
        assert expected in types, expected
    assert (
        types.index("tool.started") < types.index("tool.input.delta") < types.index("tool.called")
    )
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert {e.run for e in events} == {1}
    called = next(e for e in events if e.type == "tool.called")
    assert called.data["name"] == "Bash" and "echo" in called.data["input"]["command"]
    streamed = "".join(e.data["partial_json"] for e in events if e.type == "tool.input.delta")
    assert json.loads(streamed) == called.data["input"]
    result = next(e for e in events if e.type == "tool.result")
    assert result.data["tool_use_id"] == called.data["tool_use_id"]
    assert "scripted-bash-ok" in str(result.data["content"])  # the real shell ran it
    completed = events[-1].data
    assert completed["usage"]["output_tokens"] > 0 and completed["total_cost_usd"] > 0
    started = next(e for e in events if e.type == "run.started").data
    assert started["cwd"] == str((tmp_path / "workspaces" / session_id).resolve())


async def test_coding_scenario_really_edits_the_workspace(
    nc: Client,
    js: JetStreamContext,
    settings: Settings,
    model: ScriptedModel,
    tmp_path: Path,
    session_id: str,
) -> None:
    async with running_worker(nc, worker_settings(settings, tmp_path, model.url)):
        await submit(js, session_id, "[scenario:coding] fix the greeting")
        events = await follow(js, session_id)
    assert events[-1].type == "run.completed", events[-1]
    tools = [e.data["name"] for e in events if e.type == "tool.called"]
    assert {"Bash", "Read", "Edit"} <= set(tools)
    assert "TaskCreate" in tools or "TodoWrite" in tools
    errors = [e for e in events if e.type == "tool.result" and e.data["is_error"]]
    assert errors == []
    assert "thinking.delta" in types_of(events)


async def test_runs_really_run_at_once(
    nc: Client, js: JetStreamContext, settings: Settings, slow_model: ScriptedModel, tmp_path: Path
) -> None:
    sessions = [f"par_{i}_{tmp_path.name[-8:]}" for i in range(3)]
    async with running_worker(
        nc, worker_settings(settings, tmp_path, slow_model.url, concurrency=3)
    ):
        for session in sessions:
            await submit(js, session, "[scenario:slow] take your time")
        runs = await asyncio.gather(*(follow(js, s, timeout=90) for s in sessions))
    assert all(events[-1].type == "run.completed" for events in runs)
    # Overlap: every run had started streaming text before any of them finished.
    first_text = max(next(e.ts for e in events if e.type == "text.delta") for events in runs)
    first_end = min(events[-1].ts for events in runs)
    assert first_text < first_end


async def test_cancel_mid_run_stops_the_agent_and_its_cli(
    nc: Client,
    js: JetStreamContext,
    settings: Settings,
    slow_model: ScriptedModel,
    tmp_path: Path,
    session_id: str,
) -> None:
    ws = worker_settings(settings, tmp_path, slow_model.url)
    async with running_worker(nc, ws):
        await submit(js, session_id, "[scenario:slow] a long answer please")
        following = asyncio.create_task(follow(js, session_id, timeout=60))
        for _ in range(200):  # wait until text streams, bounded
            sub_events = await _events_so_far(js, session_id)
            if "text.delta" in sub_events:
                break
            await asyncio.sleep(0.1)
        assert processes_in(tmp_path / "workspaces" / session_id), "the CLI should be running"
        reply = await nc.request(
            ctl_subject(session_id), encode(ControlRequest(op="cancel")), timeout=5
        )
        assert json_decoder.decode(reply.data)["ok"] is True
        events = await asyncio.wait_for(following, 30)
        assert events[-1].type == "run.cancelled"
        assert processes_in(tmp_path / "workspaces" / session_id) == []
    assert types_of(events).count("run.cancelled") == 1
    assert not {"run.completed", "run.failed"} & set(types_of(events))


async def _events_so_far(js: JetStreamContext, session: str) -> list[str]:
    from nats.js.errors import NotFoundError

    from agentcast.subjects import EVENTS_STREAM, session_type_filter

    try:
        await js.get_last_msg(
            EVENTS_STREAM, session_type_filter(session, "text.delta"), direct=True
        )
        return ["text.delta"]
    except NotFoundError:
        return []


async def test_follow_up_message_is_run_two_with_the_conversation(
    nc: Client,
    js: JetStreamContext,
    settings: Settings,
    model: ScriptedModel,
    tmp_path: Path,
    session_id: str,
) -> None:
    async with running_worker(
        nc, worker_settings(settings, tmp_path, model.url, session_hold_s=30)
    ):
        await submit(js, session_id, "[scenario:quick] remember the word pelican")
        await follow(js, session_id)
        raw = await nc.request(
            ctl_subject(session_id),
            encode(ControlRequest(op="message", text="[scenario:followup] what did I ask first?")),
            timeout=5,
        )
        reply = json_decoder.decode(raw.data)
        assert reply == {"ok": True, "run": 2}
        events = await follow(js, session_id, runs=2)
    run2 = [e for e in events if e.run == 2]
    assert types_of(run2)[:2] == ["run.queued", "user.message"]
    assert run2[-1].type == "run.completed"
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    bodies = await model.requests()
    followup = [b for b in bodies if "what did I ask first" in json.dumps(b.get("messages", []))]
    assert followup and "remember the word pelican" in json.dumps(followup[-1]["messages"])


async def test_run_request_for_a_finished_session_resumes_it_as_run_two(
    nc: Client,
    js: JetStreamContext,
    settings: Settings,
    model: ScriptedModel,
    tmp_path: Path,
    session_id: str,
) -> None:
    ws = worker_settings(settings, tmp_path, model.url, session_hold_s=0.1)
    async with running_worker(nc, ws):
        await submit(js, session_id, "[scenario:quick] the secret is heron")
        await follow(js, session_id)
    async with running_worker(nc, ws):
        await submit(js, session_id, "[scenario:followup] and the secret?")
        events = await follow(js, session_id, runs=2)
    assert [e.run for e in events if e.type == "run.queued"] == [1, 2]
    assert events[-1].type == "run.completed" and events[-1].run == 2
    bodies = await model.requests()
    resumed = [b for b in bodies if "and the secret?" in json.dumps(b.get("messages", []))]
    assert resumed and "the secret is heron" in json.dumps(resumed[-1]["messages"])


async def test_api_error_scenario_fails_the_run_loudly(
    nc: Client,
    js: JetStreamContext,
    settings: Settings,
    model: ScriptedModel,
    tmp_path: Path,
    session_id: str,
) -> None:
    async with running_worker(nc, worker_settings(settings, tmp_path, model.url)):
        await submit(js, session_id, "[scenario:api_error] this will fail")
        events = await follow(js, session_id)
    assert events[-1].type == "run.failed"
    assert events[-1].data["kind"] == "api_error" and events[-1].data["error"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"this is not json", "invalid_json"),
        (b'{"session": "a.b", "prompt": "hi"}', "invalid_session"),
        (b'{"session": ">", "prompt": "hi"}', "invalid_session"),
        (b'["a list"]', "invalid_request"),
    ],
)
async def test_requests_without_a_valid_session_are_rejected_with_the_reason(
    nc: Client,
    js: JetStreamContext,
    settings: Settings,
    model: ScriptedModel,
    tmp_path: Path,
    body: bytes,
    code: str,
) -> None:
    rejected = await nc.subscribe(RUNS_REJECTED)
    async with running_worker(nc, worker_settings(settings, tmp_path, model.url)):
        await js.publish(RUNS_SUBMIT, body)
        msg = await rejected.next_msg(timeout=20)
        assert json_decoder.decode(msg.data)["code"] == code
        # The worker lives on and still runs good requests.
        session = f"after_{code}_{tmp_path.name[-6:]}"
        await submit(js, session, "[scenario:quick] hi")
        assert (await follow(js, session))[-1].type == "run.completed"
    await rejected.unsubscribe()
    streams = [s.config.subjects for s in await js.streams_info()]
    assert not any("a.b" in str(subjects) for subjects in streams)


@pytest.mark.parametrize(
    ("prompt", "options", "field"),
    [
        ("", {}, "prompt"),
        ("hi", {"model": "gpt-9"}, "options.model"),
        ("hi", {"max_turns": 10_000}, "options.max_turns"),
        ("hi", {"allowed_tools": ["Bash", "WebFetch"]}, "options.allowed_tools"),
        ("hi", {"cwd": "/etc"}, "options"),
        ("hi", {"permission_mode": "bypassPermissions"}, "options"),
    ],
)
async def test_requests_outside_policy_fail_on_their_session(
    nc: Client,
    js: JetStreamContext,
    settings: Settings,
    model: ScriptedModel,
    tmp_path: Path,
    session_id: str,
    prompt: str,
    options: dict,
    field: str,
) -> None:
    async with running_worker(nc, worker_settings(settings, tmp_path, model.url)):
        await submit(js, session_id, prompt, **options)
        events = await follow(js, session_id)
    assert types_of(events) == ["run.queued", "run.failed"]
    assert events[-1].data["kind"] == "policy"
    assert events[-1].data["error"].startswith(field)
    assert not (tmp_path / "workspaces" / session_id).exists()


async def test_nats_killed_mid_run_and_restarted_loses_nothing(
    private_nats: PrivateNats, tmp_path: Path, slow_model: ScriptedModel, session_id: str
) -> None:
    server, nc = private_nats.server, private_nats.nc
    observer = await connect(private_nats.settings, "observer")
    js = observer.jetstream()
    try:
        async with running_worker(
            nc, worker_settings(private_nats.settings, tmp_path, slow_model.url)
        ):
            await submit(js, session_id, "[scenario:slow] keep going through an outage")
            for _ in range(300):
                if "text.delta" in await _events_so_far(js, session_id):
                    break
                await asyncio.sleep(0.05)
            server.kill()
            await asyncio.sleep(1.5)
            await server.start_async()
            events = await follow(js, session_id, timeout=90)
    finally:
        await disconnect(observer)
    assert events[-1].type == "run.completed"
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len({e.id for e in events}) == len(events)


async def test_worker_shutdown_cancels_runs_past_the_grace_and_ends_their_cli(
    nc: Client,
    js: JetStreamContext,
    settings: Settings,
    slow_model: ScriptedModel,
    tmp_path: Path,
    session_id: str,
) -> None:
    ws = worker_settings(settings, tmp_path, slow_model.url, shutdown_grace_s=0.5)
    following = asyncio.create_task(follow(js, session_id, timeout=60))
    async with running_worker(nc, ws):
        await submit(js, session_id, "[scenario:slow] still going when the worker stops")
        for _ in range(200):
            if "text.delta" in await _events_so_far(js, session_id):
                break
            await asyncio.sleep(0.1)
    # Leaving the block stopped the worker (as SIGTERM does): the run was cancelled, not lost.
    events = await asyncio.wait_for(following, 30)
    assert events[-1].type == "run.cancelled"
    assert events[-1].data["reason"] == "worker shutdown"
    assert processes_in(tmp_path / "workspaces" / session_id) == []
