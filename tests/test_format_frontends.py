"""The README's front-end snippets, run for real in Node against the gateway: an AG-UI
HttpAgent reading a session, and the AI SDK transport useChat would use (send + resume)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from agentcast.settings import Settings
from tests.support.formats import NODE_DIR
from tests.support.gateway import GatewayProcess, token
from tests.support.scripted import ScriptedModel
from tests.support.worker import follow, running_worker, submit, worker_settings


@pytest.fixture(scope="module")
async def model() -> AsyncIterator[ScriptedModel]:
    async with ScriptedModel(speed=0) as scripted:
        yield scripted


async def node(script: str, *args: str) -> dict[str, Any]:
    if shutil.which("node") is None or not (NODE_DIR / "node_modules").is_dir():
        pytest.skip("node and tests/node/node_modules (npm ci --prefix tests/node) are needed")
    proc = await asyncio.create_subprocess_exec(
        "node", str(NODE_DIR / script), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out.decode().splitlines()[-1])
    return result


async def test_ag_ui_http_agent_reads_a_session(
    nc: Client, js: JetStreamContext, settings: Settings, model: ScriptedModel,
    gateway: GatewayProcess, tmp_path: Path, session_id: str,
) -> None:  # fmt: skip
    async with running_worker(nc, worker_settings(settings, tmp_path, model.url)):
        await submit(js, session_id, "[scenario:bash] say hello from the shell")
        events = await follow(js, session_id)
    got = await node("agui-httpagent.mjs", gateway.url, token(), session_id)
    assert "error" not in got, got
    text = "".join(e.data["text"] for e in events if e.type == "text.completed")
    assert "".join(got["events"]) == text
    roles = [m["role"] for m in got["messages"]]
    assert roles[0] == "user" and "assistant" in roles and "tool" in roles
    tool = next(m for m in got["messages"] if m["role"] == "tool")
    assert "scripted-bash-ok" in tool["content"]


async def test_ai_sdk_chat_transport_sends_and_resumes(
    nc: Client, settings: Settings, model: ScriptedModel, gateway: GatewayProcess,
    tmp_path: Path, session_id: str,
) -> None:  # fmt: skip
    async with running_worker(nc, worker_settings(settings, tmp_path, model.url)):
        got = await node(
            "aisdk-usechat.mjs", gateway.url, token(("read", "run")), session_id,
            "[scenario:quick] hi",
        )  # fmt: skip
    assert got["before"] is None and got["after"] is None  # 204: no active run
    message = got["message"]
    assert message["id"] == f"{session_id}:1" and message["role"] == "assistant"
    assert any(p["type"] == "text" and p["text"] for p in message["parts"])
