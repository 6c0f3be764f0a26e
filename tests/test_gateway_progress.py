"""`GET /v1/progress` against a real gateway and nats-server: KV first, then live, by glob and token."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse
from nats.aio.client import Client
from nats.js import JetStreamContext

from agentcast.codec import encode
from agentcast.progress import ProgressSnapshot
from agentcast.subjects import SESSIONS_BUCKET, progress_subject
from tests.support.events import unique_session
from tests.support.gateway import GatewayProcess, auth, token


def _snapshot(session: str, updated_at: int, **fields: Any) -> ProgressSnapshot:
    return ProgressSnapshot(
        session=session, state="running", run=1, updated_at=updated_at, **fields
    )


def _as_json(snap: ProgressSnapshot) -> dict:
    return json.loads(encode(snap))


async def _put(js: JetStreamContext, *snapshots: ProgressSnapshot) -> None:
    kv = await js.key_value(SESSIONS_BUCKET)
    for snap in snapshots:
        await kv.put(snap.session, encode(snap))


async def _publish(nc: Client, *snapshots: ProgressSnapshot) -> None:
    for snap in snapshots:
        await nc.publish(progress_subject(snap.session), encode(snap))
    await nc.flush()


@asynccontextmanager
async def _progress(
    http: httpx.AsyncClient, params: dict[str, str], headers: dict[str, str] | None = None
) -> AsyncIterator[AsyncGenerator[ServerSentEvent, None]]:
    """The SSE messages of a /v1/progress stream (comments and retry lines skipped)."""
    async with aconnect_sse(
        http, "GET", "/v1/progress", params=params, headers=headers or auth()
    ) as source:
        source.response.raise_for_status()

        async def messages() -> AsyncGenerator[ServerSentEvent, None]:
            async for sse in source.aiter_sse():
                if sse.event != "message" or sse.data:
                    yield sse

        stream = messages()
        try:
            yield stream
        finally:
            await stream.aclose()


async def _next(stream: AsyncGenerator[ServerSentEvent, None], event: str = "progress") -> dict:
    sse = await anext(stream)
    assert sse.event == event, sse
    data: dict = json.loads(sse.data)
    return data


async def _until_synced(stream: AsyncGenerator[ServerSentEvent, None]) -> tuple[list[dict], dict]:
    """Snapshots up to the `synced` marker, and the marker."""
    snaps = []
    async for sse in stream:
        if sse.event == "synced":
            return snaps, json.loads(sse.data)
        assert sse.event == "progress", sse
        snaps.append(json.loads(sse.data))
    raise AssertionError("stream ended before synced")


async def test_current_snapshots_then_synced_then_live_ones_by_glob(
    http: httpx.AsyncClient, js: JetStreamContext, nc: Client
) -> None:
    prefix = unique_session("prog")
    a, b, other = f"{prefix}_a", f"{prefix}_b", unique_session("other")
    await _put(js, _snapshot(a, 10, turns=1), _snapshot(b, 20), _snapshot(other, 30))
    async with asyncio.timeout(20), _progress(http, {"sessions": f"{prefix}_*"}) as stream:
        snaps, synced = await _until_synced(stream)
        assert sorted(s["session"] for s in snaps) == [a, b]
        assert synced == {"sessions": 2}
        assert next(s for s in snaps if s["session"] == a)["turns"] == 1

        # Live: only sessions matching the glob, in publish order, the full snapshot JSON.
        await _publish(nc, _snapshot(other, 31), _snapshot(a, 11, turns=2), _snapshot(b, 21))
        live = [await _next(stream) for _ in range(2)]
        assert [(s["session"], s["updated_at"]) for s in live] == [(a, 11), (b, 21)]
        assert live[0] == _as_json(_snapshot(a, 11, turns=2))


async def test_the_token_glob_limits_what_a_client_sees_whatever_it_asks(
    http: httpx.AsyncClient, js: JetStreamContext, nc: Client
) -> None:
    prefix = unique_session("team")
    mine, theirs = f"{prefix}_mine", f"{prefix}x_theirs"
    await _put(js, _snapshot(mine, 1), _snapshot(theirs, 1))
    headers = auth(("read",), sessions=f"{prefix}_*")
    async with asyncio.timeout(20), _progress(http, {"sessions": f"{prefix}*"}, headers) as stream:
        snaps, _ = await _until_synced(stream)
        assert [s["session"] for s in snaps] == [mine]
        await _publish(nc, _snapshot(theirs, 2), _snapshot(mine, 2))
        assert (await _next(stream))["session"] == mine


async def test_auth_and_parameters_are_checked(http: httpx.AsyncClient) -> None:
    assert (await http.get("/v1/progress")).json()["error"]["code"] == "unauthorized"
    response = await http.get("/v1/progress", headers=auth(("run",)))
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    response = await http.get("/v1/progress", params={"sessions": "a.b"}, headers=auth())
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_sessions"
    async with http.stream("GET", "/v1/progress", params={"token": token()}) as response:
        assert response.status_code == 200  # EventSource passes the token in the query
        assert response.headers["content-type"].startswith("text/event-stream")


async def test_heartbeats_keep_an_idle_stream_alive(http: httpx.AsyncClient) -> None:
    """The test gateway beats every second (AGENTCAST_HEARTBEAT_S=1)."""
    glob = unique_session("quiet") + "_*"
    async with asyncio.timeout(15):
        async with http.stream(
            "GET", "/v1/progress", params={"sessions": glob}, headers=auth()
        ) as response:
            beats = 0
            async for line in response.aiter_lines():
                beats += line.startswith(": keep-alive")
                if beats == 2:
                    break
    assert beats == 2


async def test_a_stalled_client_is_dropped_as_lagged_while_others_get_everything(
    gateway: GatewayProcess, http: httpx.AsyncClient, nc: Client
) -> None:
    session = unique_session("flood")
    glob = session + "*"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gateway.port))
    sock.sendall(
        f"GET /v1/progress?sessions={glob} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {token()}\r\n\r\n".encode()
    )
    # 8 MB in all, more than loopback socket buffers hold; each snapshot under the
    # client buffer (64 KiB), and the reader keeps up: only the stalled client lags.
    count, big = 500, "x" * (16 * 1024)
    got = []
    async with asyncio.timeout(60), _progress(http, {"sessions": glob}) as stream:
        await _until_synced(stream)
        await asyncio.sleep(0.5)  # the stalled client reaches its live phase too
        for i in range(0, count, 2):
            await _publish(nc, *(_snapshot(session, n + 1, activity=big) for n in (i, i + 1)))
            got += [(await _next(stream))["updated_at"] for _ in range(2)]
    assert got == list(range(1, count + 1))

    def read_all() -> bytes:
        sock.settimeout(30)
        chunks, deadline = [], time.monotonic() + 30
        while time.monotonic() < deadline:
            data = sock.recv(1 << 16)
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)

    raw = await asyncio.to_thread(read_all)
    sock.close()
    assert b"event: lagged" in raw[-4096:]
    assert raw.count(b"event: progress") < count
