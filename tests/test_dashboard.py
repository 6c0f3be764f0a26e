"""The web dashboard in a real headless Chromium, against `agentcast up --demo`.

Needs the Debian `chromium` package and Playwright for Python (the `test`
extra); `.ci/run` installs both. Without them these tests fail, saying what to
install: a dashboard nobody tested is not a dashboard that works.
"""

from __future__ import annotations

import json
import os
import re
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, playwright_factory
from tests.support.gateway import GatewayProcess
from tests.support.up import Up, running_up

README_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "dashboard.png"
"""Refreshed only with AGENTCAST_UPDATE_SCREENSHOT=1, so a test run leaves the tree clean."""


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Up]:
    async with running_up(tmp_path / "up", "--demo", "--speed", "0.3", "--demo-agents", "2") as up:
        yield up


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Any]:
    """A dark-mode page; its uncaught errors fail the test; its last state is saved as last.png."""
    async with playwright_factory()() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = await browser.new_context(
            viewport={"width": 1440, "height": 900}, color_scheme="dark"
        )
        page = await context.new_page()
        page.set_default_timeout(WAIT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            yield page
            assert errors == [], f"uncaught errors in the page: {errors}"
        finally:
            await page.screenshot(path=str(tmp_path / "last.png"))  # to look at after a failure
            await browser.close()


async def _streamed_text(up: Up, session: str) -> str:
    """Every text delta of the session's first run, straight from the gateway."""
    text = []
    headers = {"Authorization": f"Bearer {up.token}"}
    params = {"types": "text.delta,run.*"}
    path = f"/v1/sessions/{session}/events"
    async with (
        httpx.AsyncClient(base_url=up.base, headers=headers, timeout=20) as http,
        aconnect_sse(http, "GET", path, params=params) as source,
    ):
        async for sse in source.aiter_sse():
            if sse.event == "text.delta":
                text.append(json.loads(sse.data)["data"]["text"])
            elif sse.event in ("run.completed", "run.failed", "run.cancelled"):
                return "".join(text)
    raise AssertionError("the stream ended before the run did")


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


async def _start_run(page: Any, prompt: str, session: str) -> None:
    await page.goto(page.url.split("#", 1)[0] + "#/")
    await page.fill("#new-run-prompt", prompt)
    await page.fill("#new-run-session", session)
    await page.click("#new-run-submit")
    await page.wait_for_url(re.compile(rf"#/s/{session}$"))


async def test_dashboard_shows_live_agents_streams_runs_and_cancels(
    demo: Up, page: Any, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    await page.goto(demo.dashboard)
    await expect(page.locator("#progress-conn")).to_have_attribute("data-state", "live")
    rows = page.locator("#sessions-body tr")
    await expect(rows.first).to_be_visible()  # demo agents appear by themselves
    demo_rows = await rows.count()

    # A bad request is answered with the API's error, shown by the form.
    await page.fill("#new-run-prompt", "hello")
    await page.fill("#new-run-session", "not a session id")
    await page.click("#new-run-submit")
    await expect(page.locator("#new-run-error")).to_contain_text("invalid_session")

    # Runs from the prompt box: a coding agent and a sub-agent work while we watch a slow one.
    tag = uuid.uuid4().hex[:8]
    code, sub, slow = f"ui_code_{tag}", f"ui_sub_{tag}", f"ui_slow_{tag}"
    await _start_run(page, "[scenario:coding] Build a small word counter and fix its bug", code)
    await _start_run(page, "[scenario:subagent] Delegate a shell check to a sub-agent", sub)
    await _start_run(
        page, "[scenario:slow] [speed:1] Explain, at length, how streaming works", slow
    )

    # The slow run streams; its gateway dies under it; the page resumes; cancel stops the run.
    streaming = page.locator(".run .text.streaming").first
    await expect(streaming).to_contain_text("Streaming an agent")
    await _grows(page, len(await streaming.text_content() or ""))
    os.kill(demo.gateway_pid(), signal.SIGKILL)  # `up` starts another
    conn = page.locator("#events-conn")
    await expect(conn).to_have_attribute("data-state", "reconnecting")
    await expect(conn).to_have_attribute("data-state", "live")
    await _grows(page, len(await streaming.text_content() or ""))
    await page.click("#s-cancel")
    await expect(page.locator('.run-summary[data-state="cancelled"]')).to_be_visible()
    await expect(page.locator("#s-state")).to_have_attribute("data-state", "cancelled")
    shown = await page.locator(".run .msg.assistant .text").all_text_contents()
    assert _squash("".join(shown)) == _squash(await _streamed_text(demo, slow)), (
        "text lost or doubled"
    )

    # The table, never reloaded, has both new sessions; the state filter works.
    await page.click("a.brand")
    await expect(page.locator(f'#sessions-body tr[data-session="{slow}"]')).to_be_visible()
    assert await rows.count() >= demo_rows + 3
    await page.click('#state-filter [data-state="cancelled"]')
    await expect(page.locator(f'tr[data-session="{code}"]')).to_be_hidden()
    await expect(page.locator(f'tr[data-session="{slow}"] .badge')).to_have_text("cancelled")
    await page.click('#state-filter [data-state="all"]')

    # The sub-agent's own tool call sits under the call that started it.
    await page.click(f'tr[data-session="{sub}"] a')
    agent = page.locator('.tool[data-tool="Agent"]').first
    await expect(agent.locator('.tool-children .tool[data-tool="Bash"]')).to_have_attribute(
        "data-status", "done"
    )
    await expect(agent.locator(".task-line")).to_contain_text("Sub-agent")
    await expect(page.locator('.run-summary[data-state="completed"]')).to_be_visible()
    await page.click("a.brand")

    # The coding session, replayed from its start: tool calls, the plan, the summary.
    await page.click(f'tr[data-session="{code}"] a')
    bash = page.locator('.tool[data-tool="Bash"]').first
    await expect(bash.locator(".tool-summary")).to_contain_text("wc -w")
    await expect(bash).to_have_attribute("data-status", "done")
    await expect(bash.locator(".tool-result summary")).to_contain_text("Result")
    await expect(page.locator('.run-summary[data-state="completed"]')).to_be_visible()
    await expect(page.locator("#plan li[data-status=completed]")).to_have_count(3)
    await expect(page.locator("#s-state")).to_have_attribute("data-state", "completed")
    await expect(page.locator(".run .text").last).to_contain_text("counts words instead of lines")

    # A follow-up message continues the conversation as run 2.
    await page.fill("#composer-text", "[scenario:followup] Thanks! What did I ask you first?")
    await page.click("#composer-send")
    await expect(page.locator('.run[data-run="2"] .run-summary')).to_be_visible()
    await page.locator('.tool[data-tool="Bash"]').first.evaluate("t => t.scrollIntoView()")
    await page.locator("#toasts").evaluate("t => t.replaceChildren()")  # transient notices
    screenshot = tmp_path / "dashboard.png"
    await page.screenshot(path=str(screenshot), animations="disabled")
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("AGENTCAST_UPDATE_SCREENSHOT") == "1":
        README_SCREENSHOT.write_bytes(screenshot.read_bytes())


async def _grows(page: Any, length: int) -> None:
    """Wait until the streaming text is longer than `length` by a few words."""
    await page.wait_for_function(
        "n => (document.querySelector('.run .text.streaming')?.textContent.length ?? 0) > n + 40",
        arg=length,
    )


async def test_dashboard_assets_are_served_without_a_token(gateway: GatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        index = await http.get("/")
        assert index.status_code == 200 and "text/html" in index.headers["content-type"]
        assert "default-src 'self'" in index.headers["content-security-policy"]
        for src in re.findall(r'(?:src|href)="(/dashboard/[^"]+)"', index.text):
            asset = await http.get(src)
            assert asset.status_code == 200, src
        script = await http.get("/dashboard/app.js")
        assert script.headers["content-type"].startswith("text/javascript")
        for bad in ("/dashboard/nope.js", "/dashboard/..%2Fdashboard.py", "/dashboard/.hidden.js"):
            missing = await http.get(bad)
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
