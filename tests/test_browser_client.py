"""/static/agentcast.js in a real Chromium: a run followed through a gateway kill -9, each delta once."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentcast.client import Client, event_type
from agentcast.events import TERMINAL_TYPES, TextDelta
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, playwright_factory
from tests.support.up import Up, running_up

# Runs in the page: start a run with the module and follow it, recording what it delivers.
_FOLLOW = """async ({ token, transport, prompt }) => {
  const { Client, TERMINAL_TYPES } = await import("/static/agentcast.js");
  const client = new Client({ token, transport });
  const got = { deltas: [], seqs: [], states: [], done: null };
  window.__got = got;
  const run = await client.run(prompt);
  client.events(run.session, {
    on: { "text.delta": (event) => got.deltas.push(event.data.text) },
    onEvent: (event) => {
      got.seqs.push(event.seq);
      if (TERMINAL_TYPES.has(event.type)) got.done = event.type;
    },
    onState: (state) => got.states.push(state),
  });
  return run.session;
}"""


@pytest.fixture(scope="module")
async def demo(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Up]:
    data = tmp_path_factory.mktemp("up") / "data"
    async with running_up(data, "--demo", "--demo-agents", "0", "--speed", "0.3") as up:
        yield up


@pytest.fixture
async def page(demo: Up, tmp_path: Path) -> AsyncIterator[Any]:
    async with playwright_factory()() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = await browser.new_page()
        page.set_default_timeout(WAIT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            await page.goto(demo.dashboard)  # the module is same-origin with the page
            yield page
            assert errors == [], f"uncaught errors in the page: {errors}"
        finally:
            await page.screenshot(path=str(tmp_path / "last.png"))
            await browser.close()


async def _server_text(demo: Up, session: str) -> tuple[str, int]:
    """The session's streamed text and its event count, read by the Python client."""
    text, count = [], 0
    async with Client(demo.base, demo.token) as client:
        async for event in client.events(session):
            count += 1
            if isinstance(event, TextDelta):
                text.append(event.data.text)
            if event_type(event) in TERMINAL_TYPES:
                break
    return "".join(text), count


@pytest.mark.parametrize("transport", ["sse", "ws"])
async def test_the_module_resumes_through_a_gateway_kill_with_each_delta_once(
    demo: Up, page: Any, transport: str
) -> None:
    prompt = "[scenario:slow] a long answer please"
    session = await page.evaluate(
        _FOLLOW, {"token": demo.token, "transport": transport, "prompt": prompt}
    )
    await page.wait_for_function("() => window.__got.deltas.length >= 5")
    killed = demo.gateway_pid()
    os.kill(killed, signal.SIGKILL)  # `up` starts another on the same port
    await page.wait_for_function("() => window.__got.states.includes('reconnecting')")
    await page.wait_for_function("() => window.__got.done !== null", timeout=90_000)
    got = await page.evaluate("window.__got")
    assert demo.gateway_pid() != killed
    assert got["done"] == "run.completed"
    text, count = await _server_text(demo, session)
    assert got["seqs"] == list(range(1, count + 1)), "an event lost or repeated"
    assert "".join(got["deltas"]) == text
    assert got["states"].count("live") >= 2  # live, then live again after the restart


async def test_the_module_is_served_as_javascript(demo: Up) -> None:
    async with httpx.AsyncClient(base_url=demo.base, timeout=10) as http:
        module = await http.get("/static/agentcast.js")
    assert module.status_code == 200
    assert module.headers["content-type"].startswith("text/javascript")
    assert "export class Client" in module.text
