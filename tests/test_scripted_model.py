"""The scripted model: stream shapes, scenario selection, and the real Claude Code CLI end to end."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ClaudeSDKClient,
    Message,
    ResultError,
    ResultMessage,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
    query,
)
from httpx_sse import aconnect_sse

from producer.scripted_model import Scenario, load_scenarios
from producer.scripted_model.conversation import read_conversation
from producer.scripted_model.pacing import Pacing
from producer.scripted_model.scenario import (
    ApiError,
    ScenarioError,
    TextBlock,
    ThinkingBlock,
    Turn,
    Variant,
)
from producer.scripted_model.scenario import ToolUseBlock as ScriptedToolUse
from producer.scripted_model.select import (
    fill_placeholders,
    plan_turn,
    prompt_speed,
    select_scenario,
)
from producer.scripted_model.stream import Usage, encode_sse, message_body, turn_events
from tests.support.scripted import ScriptedModel

FILE_TOOLS = ["Bash", "Read", "Write", "Edit"]
TASK_TOOLS = ["TaskCreate", "TaskUpdate", "TaskList", "TaskGet", "TodoWrite"]

TURN = Turn(
    blocks=[
        ThinkingBlock(thinking="First I think about it, then I act."),
        TextBlock(text="Let me run a command for you, then report back."),
        ScriptedToolUse(name="Bash", input={"command": "echo 'hi {there}'", "timeout": 5}),
    ]
)


# --- Claude Code shaped request bodies (as captured from the 2.1.x CLI) -----------------


def _env_turn(cwd: str, deferred: tuple[str, ...] = ()) -> dict[str, Any]:
    text = (
        "# Environment\nYou have been invoked in the following environment: \n"
        f" - Primary working directory: {cwd}\n - Is a git repository: false\n"
    )
    if deferred:
        text += (
            "\nThe following deferred tools are now available via ToolSearch. Their schemas are "
            'NOT loaded. Use ToolSearch with query "select:<name>[,<name>...]":\n'
            + "\n".join(deferred)
            + "\n\n"
        )
    return {"role": "system", "content": [{"type": "text", "text": text}]}


def _prompt(text: str) -> dict[str, Any]:
    reminder = "<system-reminder>\nAttribution for git commits...\n</system-reminder>\n"
    return {
        "role": "user",
        "content": [{"type": "text", "text": reminder}, {"type": "text", "text": text}],
    }


def _call(call_id: str, name: str, **tool_input: Any) -> dict[str, Any]:
    block = {"type": "tool_use", "id": call_id, "name": name, "input": tool_input}
    return {"role": "assistant", "content": [block]}


def _result(call_id: str, text: str) -> dict[str, Any]:
    block = {"type": "tool_result", "tool_use_id": call_id, "content": text}
    return {"role": "user", "content": [block]}


def _body(messages: list[dict[str, Any]], tools: list[str]) -> dict[str, Any]:
    return {
        "model": "claude-test-1",
        "stream": True,
        "system": [{"type": "text", "text": "You are a Claude agent."}],
        "tools": [{"name": name, "input_schema": {"type": "object"}} for name in tools],
        "messages": messages,
    }


# --- (i) stream generation ------------------------------------------------------------


def test_stream_events_come_in_the_order_and_shapes_of_the_messages_api() -> None:
    events = turn_events(TURN, model="claude-test-1", usage=Usage(1200), rng=random.Random(1))
    names = [e.event for e in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert names.count("ping") == 1

    start = events[0].data["message"]
    assert start["model"] == "claude-test-1"
    assert start["role"] == "assistant" and start["content"] == []
    assert start["stop_reason"] is None and start["usage"]["input_tokens"] == 1200

    # Blocks are opened, filled and closed one after the other, with matching indexes.
    blocks: list[tuple[int, str]] = []
    open_index: int | None = None
    for event in events[1:-2]:
        data = event.data
        assert data["type"] == event.event
        if event.event == "content_block_start":
            assert open_index is None
            open_index = data["index"]
            blocks.append((data["index"], data["content_block"]["type"]))
        elif event.event == "content_block_delta":
            assert data["index"] == open_index
        elif event.event == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
    assert blocks == [(0, "thinking"), (1, "text"), (2, "tool_use")]

    delta = events[-2].data
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    deltas = [e for e in events if e.event == "content_block_delta"]
    assert delta["usage"]["output_tokens"] == sum(e.tokens for e in deltas) > 0


def test_deltas_concatenate_to_the_scripted_text_thinking_and_tool_input() -> None:
    events = turn_events(TURN, model="m", usage=Usage(10), rng=random.Random(2))
    by_index: dict[int, list[dict[str, Any]]] = {}
    for event in events:
        if event.event == "content_block_delta":
            by_index.setdefault(event.data["index"], []).append(event.data["delta"])

    thinking = by_index[0]
    assert "".join(d["thinking"] for d in thinking[:-1]) == "First I think about it, then I act."
    assert thinking[-1]["type"] == "signature_delta" and thinking[-1]["signature"]
    assert len(thinking) > 2

    text = by_index[1]
    assert {d["type"] for d in text} == {"text_delta"}
    assert "".join(d["text"] for d in text) == "Let me run a command for you, then report back."

    tool = by_index[2]
    assert {d["type"] for d in tool} == {"input_json_delta"}
    assert tool[0]["partial_json"] == ""
    assert len(tool) > 2
    assert json.loads("".join(d["partial_json"] for d in tool)) == {
        "command": "echo 'hi {there}'",
        "timeout": 5,
    }
    start = next(e for e in events if e.event == "content_block_start" and e.data["index"] == 2)
    assert start.data["content_block"]["id"].startswith("toolu_")
    assert start.data["content_block"]["input"] == {}


def test_words_per_delta_gives_many_small_deltas() -> None:
    turn = Turn(blocks=[TextBlock(text="one two three four five six")], words_per_delta=1)
    events = turn_events(turn, model="m", usage=Usage(1), rng=random.Random(0))
    texts = [e.data["delta"]["text"] for e in events if e.event == "content_block_delta"]
    assert texts == ["one ", "two ", "three ", "four ", "five ", "six"]


def test_sse_frames_are_event_then_data_then_blank_line() -> None:
    event = turn_events(TURN, model="m", usage=Usage(1), rng=random.Random(0))[0]
    frame = encode_sse(event)
    assert frame.startswith(b"event: message_start\ndata: {")
    assert frame.endswith(b"}\n\n") and frame.count(b"\n") == 3
    assert json.loads(frame.split(b"data: ", 1)[1]) == event.data


def test_non_streaming_body_is_the_assembled_message() -> None:
    body = message_body(TURN, model="m", usage=Usage(5), rng=random.Random(0))
    assert [b["type"] for b in body["content"]] == ["thinking", "text", "tool_use"]
    assert body["content"][2]["input"] == {"command": "echo 'hi {there}'", "timeout": 5}
    assert body["stop_reason"] == "tool_use" and body["usage"]["output_tokens"] > 0


def test_an_error_turn_cannot_be_streamed() -> None:
    turn = Turn(error=ApiError(message="nope"))
    with pytest.raises(ValueError):
        turn_events(turn, model="m", usage=Usage(1), rng=random.Random(0))


def test_speed_scales_every_wait_and_zero_means_none() -> None:
    events = turn_events(TURN, model="m", usage=Usage(1), rng=random.Random(0))
    delta = next(e for e in events if e.event == "content_block_delta" and e.tokens)

    def waits(speed: float) -> list[float]:
        rng, pacing = random.Random(7), Pacing(speed=speed)
        return [pacing.first_token(rng), *(pacing.before(e, 80.0, rng) for e in events)]

    assert set(waits(0)) == {0.0}
    realistic, slower = waits(1.0), waits(2.0)
    assert realistic[0] > 0 and Pacing(speed=1).before(delta, 80.0, random.Random(0)) > 0
    assert slower == pytest.approx([2 * w for w in realistic])
    assert max(waits(1000.0)) <= Pacing().max_wait_s


# --- (ii) scenarios, selection, turns -------------------------------------------------


def test_bundled_scenarios_load_and_cover_the_documented_set() -> None:
    scenarios = load_scenarios()
    expected = {"coding", "quick", "bash", "api_error", "slow", "followup", "big_output"}
    assert expected <= set(scenarios)
    assert all(name == s.name for name, s in scenarios.items())
    slow = scenarios["slow"].turns[0]
    deltas = turn_events(slow, model="m", usage=Usage(1), rng=random.Random(0))
    assert sum(e.event == "content_block_delta" for e in deltas) >= 300


def test_an_extra_directory_adds_and_overrides_scenarios(tmp_path: Path) -> None:
    quick = {"name": "quick", "turns": [{"blocks": [{"type": "text", "text": "overridden"}]}]}
    extra = {"name": "mine", "turns": [{"blocks": [{"type": "text", "text": "mine"}]}]}
    (tmp_path / "quick.json").write_text(json.dumps(quick))
    (tmp_path / "mine.json").write_text(json.dumps(extra))
    scenarios = load_scenarios(tmp_path)
    assert scenarios["quick"].turns[0].blocks == [TextBlock(text="overridden")]
    assert "mine" in scenarios and "coding" in scenarios


@pytest.mark.parametrize(
    "content",
    [
        '{"name": "x"}',
        '{"name": "x", "turns": [{"blocks": []}]}',
        '{"name": "x", "turns": [{"error": {"status": 200, "message": "m"}}]}',
        '{"name": "x", "turns": [{"blocks": [{"type": "video", "url": "u"}]}]}',
        '{"name": "x", "keywords": ["Shell"], "turns": [{"error": {"message": "m"}}]}',
        "not json",
    ],
)
def test_an_invalid_scenario_file_is_refused_naming_the_file(tmp_path: Path, content: str) -> None:
    (tmp_path / "broken.json").write_text(content)
    with pytest.raises(ScenarioError, match="broken.json"):
        load_scenarios(tmp_path)


def test_selection_prefers_the_marker_then_keywords_then_the_default() -> None:
    scenarios = load_scenarios()
    assert select_scenario(scenarios, "[scenario:bash] fix my python code").name == "bash"
    assert select_scenario(scenarios, "please fix the bug in my script").name == "coding"
    assert select_scenario(scenarios, "run a shell command").name == "bash"
    assert select_scenario(scenarios, "what is the weather like").name == "coding"
    assert select_scenario(scenarios, "[scenario:nope] echo in the shell").name == "bash"


def test_a_speed_marker_in_the_prompt_overrides_the_server_speed() -> None:
    assert prompt_speed("[scenario:slow][speed:0.25] go") == 0.25
    assert prompt_speed("[speed:2] go") == 2.0
    assert prompt_speed("no marker") is None


def test_the_request_tells_prompt_turn_cwd_and_tools() -> None:
    messages = [
        _prompt("[scenario:bash] first"),
        _env_turn("/work/space"),
        _call("t1", "Bash", command="ls"),
        _result("t1", "a.txt"),
        _prompt("second prompt"),
        _call("t2", "Bash", command="pwd"),
        _result("t2", "/work/space"),
    ]
    conv = read_conversation(_body(messages, ["Bash", "Read"]))
    assert conv.prompt == "second prompt"
    assert conv.first_prompt == "[scenario:bash] first"
    assert conv.turn == 1
    assert conv.cwd == "/work/space"
    assert conv.tools == {"Bash", "Read"}
    assert conv.tool_results == (("Bash", "a.txt"), ("Bash", "/work/space"))


def test_tool_results_with_cli_notes_do_not_count_as_a_prompt() -> None:
    loaded = {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "tool_reference"}]},
            {"type": "text", "text": "Tool loaded."},
        ],
    }
    messages = [_prompt("go"), _env_turn("/w"), _call("t1", "ToolSearch", query="x"), loaded]
    conv = read_conversation(_body(messages, ["ToolSearch"]))
    assert conv.prompt == "go" and conv.turn == 1


def _plan(scenario: Scenario, messages: list[dict[str, Any]], tools: list[str]) -> Turn:
    conv = read_conversation(_body(messages, tools))
    return fill_placeholders(plan_turn(scenario, conv), conv)


def _tool_names(turn: Turn) -> list[str]:
    return [b.name for b in turn.blocks if isinstance(b, ScriptedToolUse)]


@pytest.mark.parametrize(
    ("tools", "first_tools"),
    [
        (["Bash", "TaskCreate", "TaskUpdate", "TodoWrite"], ["TaskCreate"] * 3),
        (["Bash", "TodoWrite"], ["TodoWrite"]),
        (["Bash", "Read"], ["Bash"]),
    ],
)
def test_coding_plans_with_whichever_task_tool_is_offered(
    tools: list[str], first_tools: list[str]
) -> None:
    coding = load_scenarios()["coding"]
    turn = _plan(coding, [_prompt("fix it"), _env_turn("/w")], tools)
    assert _tool_names(turn) == first_tools


def test_deferred_task_tools_are_loaded_with_tool_search_first() -> None:
    coding = load_scenarios()["coding"]
    start = [_prompt("fix it"), _env_turn("/w", deferred=("TaskCreate", "TaskUpdate", "WebFetch"))]
    first = _plan(coding, start, ["Bash", "ToolSearch"])
    assert _tool_names(first) == ["ToolSearch"]
    search = first.blocks[0]
    assert isinstance(search, ScriptedToolUse)
    assert search.input["query"] == "select:TaskCreate,TaskUpdate"

    # After loading, the scripted turns follow, shifted by the search turn.
    loaded = [*start, _call("s1", "ToolSearch", query="x"), _result("s1", "loaded")]
    second = _plan(coding, loaded, ["Bash", "ToolSearch", "TaskCreate", "TaskUpdate"])
    assert _tool_names(second) == ["TaskCreate"] * 3


def test_placeholders_are_filled_from_the_conversation() -> None:
    scenario = Scenario(
        name="p",
        variants=[Variant(requires_tools=["TaskCreate"], turns=[TURN, TURN])],
        turns=[TURN],
    )
    second = Turn(
        blocks=[
            ScriptedToolUse(name="Read", input={"file_path": "{cwd}/a.py", "code": "{x: 1}"}),
            ScriptedToolUse(name="TaskUpdate", input={"taskId": "{task:1}"}),
            TextBlock(text="{first_prompt} / {last_result:Bash} / {last_tool_result}"),
        ]
    )
    scenario = msgspec.structs.replace(
        scenario, variants=[Variant(requires_tools=["TaskCreate"], turns=[TURN, second])]
    )
    messages = [
        _prompt("hello there"),
        _env_turn("/home/me/ws"),
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "c1", "name": "TaskCreate", "input": {}},
                {"type": "tool_use", "id": "c2", "name": "Bash", "input": {}},
            ],
        },
        {
            "role": "user",
            # Reported out of call order, as parallel calls may be.
            "content": [
                {"type": "tool_result", "tool_use_id": "c2", "content": "bash says hi"},
                {"type": "tool_result", "tool_use_id": "c1", "content": "Task #7 created ok"},
            ],
        },
    ]
    turn = _plan(scenario, messages, ["TaskCreate", "Bash"])
    read, update, text = turn.blocks
    assert isinstance(read, ScriptedToolUse) and isinstance(update, ScriptedToolUse)
    assert read.input == {"file_path": "/home/me/ws/a.py", "code": "{x: 1}"}
    assert update.input == {"taskId": "7"}
    assert text == TextBlock(text="hello there / bash says hi / bash says hi")


def test_a_turn_past_the_script_ends_the_conversation_politely() -> None:
    quick = load_scenarios()["quick"]
    messages = [_prompt("hi"), _call("t1", "Bash"), _result("t1", "x")]
    turn = _plan(quick, messages, ["Bash"])
    assert turn.effective_stop_reason == "end_turn" and not _tool_names(turn)


# --- the HTTP server ------------------------------------------------------------------


@pytest.fixture(scope="module")
async def model() -> AsyncIterator[ScriptedModel]:
    async with ScriptedModel(speed=0) as server:
        yield server


async def test_streams_sse_that_an_sse_client_parses(model: ScriptedModel) -> None:
    body = _body([_prompt("[scenario:quick] hi")], ["Bash"])
    async with (
        httpx.AsyncClient(base_url=model.url, timeout=10) as client,
        aconnect_sse(client, "POST", "/v1/messages", json=body) as source,
    ):
        assert source.response.headers["content-type"].startswith("text/event-stream")
        events = [(e.event, e.json()) async for e in source.aiter_sse()]
    assert events[0][0] == "message_start" and events[-1][0] == "message_stop"
    assert events[0][1]["message"]["model"] == "claude-test-1"
    text = "".join(d["delta"]["text"] for name, d in events if name == "content_block_delta")
    assert text == "Hello! This is a quick answer from the scripted model."


async def test_answers_side_calls_errors_and_introspection(model: ScriptedModel) -> None:
    title_request = {
        "model": "claude-small",
        "tools": [],
        "output_config": {
            "format": {
                "type": "json_schema",
                "schema": {"type": "object", "properties": {"title": {"type": "string"}}},
            }
        },
        "messages": [{"role": "user", "content": "<session>\nFix the parser bug\n</session>"}],
    }
    async with httpx.AsyncClient(base_url=model.url, timeout=10) as client:
        title = (await client.post("/v1/messages", json=title_request)).json()
        assert title["model"] == "claude-small"
        assert json.loads(title["content"][0]["text"]) == {"title": "Parser bug"}

        counted = await client.post("/v1/messages/count_tokens", json=title_request)
        assert counted.json()["input_tokens"] > 0

        missing = await client.get("/v1/nothing/here")
        assert missing.status_code == 404
        assert missing.json()["error"]["type"] == "not_found_error"

        bad = await client.post("/v1/messages", content=b"{not json")
        assert bad.status_code == 400 and bad.json()["type"] == "error"

        failing = _body([_prompt("[scenario:api_error] go")], ["Bash"])
        error = await client.post("/v1/messages", json=failing)
        assert error.status_code == 400
        assert error.json()["error"]["type"] == "invalid_request_error"

        health = (await client.get("/_scripted/health")).json()
        assert health["status"] == "ok" and "coding" in health["scenarios"]
    recorded = await model.requests()
    assert title_request in recorded and failing in recorded


def test_the_cli_command_serves_until_terminated(tmp_path: Path) -> None:
    # `agentcast scripted-model` as a user starts it, with a scenario directory.
    (tmp_path / "mine.json").write_text(
        json.dumps({"name": "mine", "turns": [{"blocks": [{"type": "text", "text": "ok"}]}]})
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentcast.cli", "scripted-model", "--port", "0"]
        + ["--speed", "0", "--scenarios", str(tmp_path)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 20
        line = ""
        while "Uvicorn running on" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
        url = line.split("running on ")[1].split()[0]
        assert "mine" in httpx.get(f"{url}/_scripted/health").json()["scenarios"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    # uvicorn shuts down cleanly, then re-raises SIGTERM as its exit status.
    assert "Finished server process" in proc.stderr.read()


# --- (iii) the real Claude Code CLI end to end ----------------------------------------


def _options(
    model: ScriptedModel, tmp_path: Path, tools: list[str], **env: str
) -> ClaudeAgentOptions:
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    return ClaudeAgentOptions(
        cwd=workspace,
        include_partial_messages=True,
        allowed_tools=tools,
        permission_mode="acceptEdits",
        env=model.cli_env(config_dir=tmp_path / "config", **env),
    )


async def _run(prompt: str, options: ClaudeAgentOptions) -> list[Message]:
    return [message async for message in query(prompt=prompt, options=options)]


def _tool_calls(messages: list[Message]) -> list[ToolUseBlock]:
    return [
        block
        for m in messages
        if isinstance(m, AssistantMessage)
        for block in m.content
        if isinstance(block, ToolUseBlock)
    ]


def _tool_results(messages: list[Message]) -> list[ToolResultBlock]:
    return [
        block
        for m in messages
        if isinstance(m, UserMessage) and isinstance(m.content, list)
        for block in m.content
        if isinstance(block, ToolResultBlock)
    ]


@pytest.mark.parametrize(
    ("env", "planning_tool"),
    [({}, "TaskUpdate"), ({"CLAUDE_CODE_ENABLE_TASKS": "0"}, "TodoWrite")],
    ids=["task-tools", "todowrite"],
)
async def test_coding_really_writes_runs_and_edits_files(
    model: ScriptedModel, tmp_path: Path, env: dict[str, str], planning_tool: str
) -> None:
    options = _options(model, tmp_path, FILE_TOOLS + TASK_TOOLS, **env)
    messages = await _run("Write a word count script and fix its bug", options)

    result = messages[-1]
    assert isinstance(result, ResultMessage)
    assert not result.is_error and result.subtype == "success"
    assert result.total_cost_usd and result.total_cost_usd > 0
    assert "sample.txt: 9 words" in (result.result or "")

    script = tmp_path / "workspace" / "wordcount.py"
    assert "return sum(len(line.split()) for line in handle)" in script.read_text()
    assert (tmp_path / "workspace" / "sample.txt").exists()

    called = [c.name for c in _tool_calls(messages)]
    assert {"Bash", "Write", "Read", "Edit", planning_tool} <= set(called)
    results = _tool_results(messages)
    assert len(results) == len(called)
    assert not any(r.is_error for r in results)
    assert "sample.txt: 3 words" in [r.content for r in results]  # the bug, before the fix


async def test_api_error_ends_the_run_with_an_error_result_quickly(
    model: ScriptedModel, tmp_path: Path
) -> None:
    started = time.monotonic()
    messages: list[Message] = []
    # The SDK yields the error result, then raises for the CLI's non-zero exit.
    with pytest.raises(ResultError) as failure:
        async for message in query(
            prompt="[scenario:api_error] go", options=_options(model, tmp_path, [])
        ):
            messages.append(message)
    assert failure.value.terminal_reason == "api_error"
    result = messages[-1]
    assert isinstance(result, ResultMessage) and result.is_error
    assert "API Error: 400 scripted failure" in (result.result or "")
    assert time.monotonic() - started < 15


async def test_bash_output_reaches_the_answer(model: ScriptedModel, tmp_path: Path) -> None:
    messages = await _run("[scenario:bash] go", _options(model, tmp_path, ["Bash"]))
    result = messages[-1]
    assert isinstance(result, ResultMessage) and not result.is_error
    assert "hello from workspace\nscripted-bash-ok" in (result.result or "")


async def test_a_follow_up_request_carries_the_earlier_conversation(
    model: ScriptedModel, tmp_path: Path
) -> None:
    first = "[scenario:quick] Remember the word teal-4411."
    async with ClaudeSDKClient(_options(model, tmp_path, [])) as client:
        await client.query(first)
        answers = [m async for m in client.receive_response()]
        assert isinstance(answers[-1], ResultMessage) and not answers[-1].is_error
        await client.query("[scenario:followup] What did I ask you to remember?")
        followup = [m async for m in client.receive_response()]

    result = followup[-1]
    assert isinstance(result, ResultMessage) and not result.is_error
    assert first in (result.result or "")
    last_request = next(
        body
        for body in reversed(await model.requests())
        if "[scenario:followup]" in json.dumps(body["messages"])
    )
    sent = json.dumps(last_request["messages"])
    assert first in sent and "Hello! This is a quick answer" in sent


async def test_a_subagent_runs_its_own_scenario(model: ScriptedModel, tmp_path: Path) -> None:
    messages = await _run("[scenario:subagent] go", _options(model, tmp_path, ["Agent", "Bash"]))
    result = messages[-1]
    assert isinstance(result, ResultMessage) and not result.is_error
    agent_call = next(c for c in _tool_calls(messages) if c.name == "Agent")
    inner = [m for m in messages if isinstance(m, UserMessage) and m.parent_tool_use_id]
    assert any(
        "scripted-bash-ok" in str(r.content)
        for m in inner
        if m.parent_tool_use_id == agent_call.id and isinstance(m.content, list)
        for r in m.content
        if isinstance(r, ToolResultBlock)
    )
