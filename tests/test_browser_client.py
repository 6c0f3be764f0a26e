"""/static/agentcast.js in a real Chromium: a run followed through a gateway kill -9, each delta once."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from agentcast.client import Client, event_type
from agentcast.embedded import free_port
from agentcast.events import TERMINAL_TYPES, TextDelta, TextDeltaData
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, playwright_factory
from tests.support.events import build_events, publish_events, unique_session
from tests.support.gateway import GatewayProcess, token
from tests.support.roles import wait_until
from tests.support.up import Up, running_up

NGINX = "/usr/sbin/nginx"

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


class Nginx:
    """Real nginx in front of one gateway: with the gateway down it answers 502."""

    def __init__(self, root: Path, upstream_port: int) -> None:
        self.root = root
        self.port = free_port()
        self.errors = root / "error.log"
        root.mkdir(parents=True, exist_ok=True)
        temp = " ".join(
            f"{kind}_temp_path {root / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (root / "nginx.conf").write_text(
            f"daemon off; worker_processes 1; pid {root / 'nginx.pid'}; error_log {self.errors} error;\n"
            "events { worker_connections 256; }\n"
            f"http {{ access_log off; {temp}\n"
            f"  server {{ listen 127.0.0.1:{self.port};\n"
            f"    location / {{ proxy_pass http://127.0.0.1:{upstream_port}; proxy_http_version 1.1;\n"
            '      proxy_set_header Connection ""; proxy_buffering off; proxy_read_timeout 3600s; } } }\n'
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.root), "-c", str(self.root / "nginx.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"nginx did not start: {self.errors.read_text()[-2000:]}")

    def refused_upstream(self) -> int:
        """How many requests found the gateway down (each logged by nginx, answered 502)."""
        text = self.errors.read_text() if self.errors.exists() else ""
        return text.count("connect() failed")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def nginx(own_gateway: GatewayProcess, tmp_path: Path) -> Iterator[Nginx]:
    if not Path(NGINX).exists():
        pytest.fail(f"{NGINX} not found: apt-get install -y nginx", pytrace=False)
    proxy = Nginx(tmp_path / "nginx", own_gateway.port)
    own_gateway.start()
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


_COLLECT = """async ({ token, session }) => {
  const { Client } = await import("/static/agentcast.js");
  const got = { seqs: [], states: [] };
  window.__got = got;
  new Client({ token }).events(session, {
    onEvent: (event) => got.seqs.push(event.seq),
    onState: (state) => got.states.push(state),
  });
}"""


async def test_the_module_reconnects_itself_when_event_source_gives_up(
    own_gateway: GatewayProcess, nginx: Nginx, js: JetStreamContext, tmp_path: Path
) -> None:
    """Behind nginx, a dead gateway is a 502: EventSource closes for good, the module retries."""
    session = unique_session("es")
    events = build_events(session, [TextDeltaData(index=0, text=f"{i} ") for i in range(30)])
    async with playwright_factory()() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            page.set_default_timeout(WAIT_MS)
            await page.goto(f"{nginx.url}/?token={token()}")
            await page.evaluate(_COLLECT, {"token": token(), "session": session})
            await publish_events(js, events[:10])
            await page.wait_for_function("() => window.__got.seqs.length >= 10")
            own_gateway.kill()
            await publish_events(js, events[10:20])
            await page.wait_for_function("() => window.__got.states.includes('reconnecting')")
            # EventSource makes one attempt that gets the 502, then gives up: more are ours.
            await wait_until(lambda: nginx.refused_upstream() >= 3, 60, "the module's own retries")
            own_gateway.start()
            await publish_events(js, events[20:])
            await page.wait_for_function("() => window.__got.seqs.length >= 30", timeout=60_000)
            got = await page.evaluate("window.__got")
        finally:
            await browser.close()
    assert got["seqs"] == list(range(1, 31)), "an event lost or repeated"
