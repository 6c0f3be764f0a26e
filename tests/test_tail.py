"""`agentcast tail` reads a session straight from NATS, as a user runs it."""

from __future__ import annotations

import asyncio
import json
import sys

from nats.js import JetStreamContext

from agentcast.settings import Settings
from tests.support.events import build_events, publish_events, simple_run


async def tail(settings: Settings, *args: str) -> tuple[int, str, str]:
    assert settings.nats_url
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentcast.cli",
        "tail",
        *args,
        "--nats",
        settings.nats_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_tail_json_prints_every_event_of_the_session_in_order(
    js: JetStreamContext, settings: Settings, session_id: str
) -> None:
    events = build_events(session_id, simple_run(n_text=5))
    await publish_events(js, events)
    code, out, _ = await tail(settings, session_id, "--json", "--until-done")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [line["seq"] for line in lines] == [e.seq for e in events]
    assert lines[-1]["type"] == "run.completed"


async def test_tail_filters_types_with_a_prefix_pattern(
    js: JetStreamContext, settings: Settings, session_id: str
) -> None:
    await publish_events(js, build_events(session_id, simple_run(n_text=3)))
    code, out, _ = await tail(
        settings, session_id, "--json", "--types", "tool.*,run.completed", "--until-done"
    )
    types = [json.loads(line)["type"] for line in out.splitlines()]
    assert code == 0
    assert types == ["tool.started", "tool.called", "tool.result", "run.completed"]


async def test_tail_renders_text_and_tools_for_people(
    js: JetStreamContext, settings: Settings, session_id: str
) -> None:
    await publish_events(js, build_events(session_id, simple_run(n_text=3)))
    code, out, _ = await tail(settings, session_id, "--until-done")
    assert code == 0
    assert "word0 word1 word2" in out and "Bash" in out and "completed" in out


async def test_tail_refuses_an_invalid_session_id(settings: Settings) -> None:
    code, _, err = await tail(settings, "a.b")
    assert code == 2 and "invalid session id" in err
