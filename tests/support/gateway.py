"""A real gateway process (`python -m agentcast.cli gateway`) on a free port, and its clients."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from agentcast.embedded import EmbeddedNats, free_port
from agentcast.tokens import mint_token
from tests.support.nats import role_env

SECRET = "gateway-test-secret-0123456789abcdef"
"""HS256 wants at least 32 bytes (PyJWT warns below that)."""
GATEWAY_ENV = {
    "AGENTCAST_JWT_SECRET": SECRET,
    "AGENTCAST_CLIENT_BUFFER_BYTES": str(64 * 1024),
    "AGENTCAST_WS_MAX_FRAME_BYTES": str(16 * 1024),
    "AGENTCAST_HEARTBEAT_S": "1",
}


def token(scopes: tuple[str, ...] = ("read",), sessions: str = "*", ttl_s: int = 600) -> str:
    return mint_token(SECRET, scopes=list(scopes), sessions=sessions, ttl_s=ttl_s)


class GatewayProcess:
    """`agentcast gateway` as a child process; start() waits for /readyz."""

    def __init__(
        self,
        nats_url: str,
        data_dir: Path,
        port: int | None = None,
        *args: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.nats_url = nats_url
        self.env = env or {}
        self.args = args
        self.data_dir = data_dir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / f"gateway-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "agentcast.cli", "gateway", "--nats", self.nats_url,
               "--port", str(self.port), "--data", str(self.data_dir), "--log-level", "WARNING",
               *self.args]  # fmt: skip
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, env={**os.environ, **GATEWAY_ENV, **self.env}, stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"gateway exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}"
                )
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"gateway not ready after {timeout}s: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        self.terminate()
        if self.proc is not None:
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def metric(self, name: str, **labels: str) -> float:
        """A value from /metrics, summed over series matching `labels`."""
        total = 0.0
        for line in httpx.get(self.url + "/metrics", timeout=5).text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total


@pytest.fixture(scope="session")
def gateway(
    nats_server: EmbeddedNats, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """One gateway for the test session (tests isolate by session id)."""
    proc = GatewayProcess(
        nats_server.url, tmp_path_factory.mktemp("gateway"), env=role_env(nats_server, "gateway")
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def own_gateway(nats_server: EmbeddedNats, tmp_path: Path) -> Iterator[GatewayProcess]:
    """A gateway this test may kill or stop (not started: call .start())."""
    proc = GatewayProcess(nats_server.url, tmp_path / "gw", env=role_env(nats_server, "gateway"))
    try:
        yield proc
    finally:
        proc.kill()


@pytest.fixture
async def http(gateway: GatewayProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=20) as client:
        yield client


def auth(scopes: tuple[str, ...] = ("read",), sessions: str = "*") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(scopes, sessions)}"}


async def read_sse(
    client: httpx.AsyncClient,
    path: str,
    count: int,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> list[ServerSentEvent]:
    """The first `count` SSE events of a stream (comments and retry lines skipped)."""
    events: list[ServerSentEvent] = []
    if count == 0:
        return events
    async with asyncio.timeout(timeout):
        async with aconnect_sse(
            client, "GET", path, params=params, headers=headers or auth()
        ) as source:
            source.response.raise_for_status()
            async for sse in source.aiter_sse():
                if sse.event == "message" and not sse.data:
                    continue
                events.append(sse)
                if len(events) >= count:
                    break
    return events


def envelopes(events: list[ServerSentEvent]) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in events]


async def ws_events(ws: Any, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    """The next `count` `event` frames on a websockets client (other frames skipped)."""
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while len(out) < count:
            frame = json.loads(await ws.recv())
            if frame["op"] == "event":
                out.append(frame)
    return out


async def ws_reply(ws: Any, timeout: float = 10.0) -> dict[str, Any]:
    """The next frame that is not an event."""
    async with asyncio.timeout(timeout):
        while True:
            frame: dict[str, Any] = json.loads(await ws.recv())
            if frame["op"] != "event":
                return frame
