"""The server bounds what a client can send before the app: head size (413 headers_too_large), body size (413),
slow heads (slowloris, 408 and closed), idle keep-alive connections, a full descriptor table; streams are not cut; and
no token it is sent reaches its log."""

from __future__ import annotations

import asyncio
import os
import resource

import httpx
import pytest
import websockets

from agentcast.logs import REDACTED
from tests.support.gateway import GatewayProcess, auth, token
from tests.support.limits import LIMIT_HITS, gateway_fixture

_ENV = {
    "AGENTCAST_MAX_HEADER_BYTES": "8192",
    "AGENTCAST_MAX_REQUEST_BYTES": str(128 * 1024),
    "AGENTCAST_HEADER_TIMEOUT_S": "1.5",
    "AGENTCAST_IDLE_TIMEOUT_S": "1",
}


gw = gateway_fixture(_ENV, "--log-level", "INFO")


async def _raw(gw: GatewayProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", gw.port)


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    """Everything until the server closes the connection (a hang guard, not a timing)."""
    async with asyncio.timeout(30):
        return await reader.read()


async def test_an_oversized_head_gets_413_without_a_token_and_is_counted(
    gw: GatewayProcess,
) -> None:
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
        answer = await http.get("/healthz", headers={"X-Big": "a" * 50_000})
        assert answer.status_code == 413
        assert answer.json()["error"]["code"] == "headers_too_large"
        assert (await http.get("/healthz", headers={"X-Fine": "a" * 2000})).status_code == 200
    # A head sent in many small pieces is counted the same way.
    reader, writer = await _raw(gw)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    for _ in range(20):
        writer.write(b"X-Pad: " + b"b" * 1000 + b"\r\n")
        await writer.drain()
    assert (await _read_all(reader)).startswith(b"HTTP/1.1 413 ")
    writer.close()
    assert gw.metric(LIMIT_HITS, limit="max_header_bytes") >= 2


async def test_an_oversized_body_gets_413_declared_or_chunked(gw: GatewayProcess) -> None:
    headers = auth(("run",))
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
        big = b'{"prompt": "' + b"x" * 200_000 + b'"}'
        answer = await http.post("/v1/runs", content=big, headers=headers)
        assert answer.status_code == 413 and answer.json()["error"]["code"] == "too_large"

        async def chunks():  # no content-length: chunked transfer encoding
            yield b'{"prompt": "'
            for _ in range(40):
                yield b"y" * 8192
            yield b'"}'

        try:
            chunked = await http.post("/v1/runs", content=chunks(), headers=headers)
            assert chunked.status_code == 413
        except httpx.RemoteProtocolError:
            pass  # the server closed while the client was still sending: refused as well
    assert gw.metric(LIMIT_HITS, limit="max_request_bytes") >= 2


async def test_slowloris_heads_and_silent_connections_are_dropped_while_others_are_served(
    gw: GatewayProcess,
) -> None:
    async def slow_head() -> bytes:
        reader, writer = await _raw(gw)
        answer = asyncio.create_task(reader.read())  # until the server ends the connection
        try:
            head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 100
            async with asyncio.timeout(30):
                for byte in head:
                    if answer.done():
                        break
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.3)  # a client's pace, not an assertion
                return await answer
        finally:
            writer.close()

    async def silent() -> bytes:
        reader, writer = await _raw(gw)
        try:
            return await _read_all(reader)
        finally:
            writer.close()

    slow = [asyncio.create_task(slow_head()) for _ in range(20)]
    quiet = [asyncio.create_task(silent()) for _ in range(20)]
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
        assert (await http.get("/healthz")).status_code == 200  # served meanwhile
    for answer in await asyncio.gather(*slow, *quiet):
        assert answer.startswith(b"HTTP/1.1 408 ")
    assert gw.metric(LIMIT_HITS, limit="header_timeout_s") >= 40


async def test_idle_keep_alive_connections_are_closed_but_streams_stay_open(
    gw: GatewayProcess,
) -> None:
    reader, writer = await _raw(gw)
    # Not /healthz: the server answers that one itself and closes (the next test).
    writer.write(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await _read_all(reader)  # ends only because the idle connection is closed
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"openapi"' in answer
    writer.close()
    assert gw.metric(LIMIT_HITS, limit="idle_timeout_s") >= 1

    async with (
        httpx.AsyncClient(base_url=gw.url, timeout=30) as http,
        http.stream("GET", "/v1/events", params={"from": "now"}, headers=auth()) as sse,
    ):
        assert sse.status_code == 200
        beats = 0
        async with asyncio.timeout(30):
            async for line in sse.aiter_lines():
                beats += line.startswith(":")
                if beats == 3:  # heartbeats every second: past the head and idle timeouts
                    break


async def test_tokens_in_urls_never_reach_the_gateway_log(gw: GatewayProcess) -> None:
    good, bad = token(), token(("read",), "nothing_*")[:-3] + "xyz"  # a valid one, a forged one
    async with websockets.connect(f"{gw.ws_url}?token={good}") as ws:
        await ws.send('{"op":"ping"}')
        await ws.recv()
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(f"{gw.ws_url}?token={bad}"):
            pass
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
        await http.get("/v1/sessions", params={"token": bad})
        await http.get("/v1/sessions", headers={"Authorization": f"Bearer {bad}"})
    async with asyncio.timeout(30):  # the lines are the server's: written as it logs them
        while "WebSocket /v1/ws?token=" + REDACTED not in gw.log.read_text():  # uvicorn's own
            await asyncio.sleep(0.05)
    log = gw.log.read_text()
    for secret in (good, bad, good.split(".")[2], bad.split(".")[1]):
        assert secret not in log


async def test_healthz_is_answered_by_the_server_itself_and_pipelined_answers_keep_their_order(
    gw: GatewayProcess,
) -> None:
    reader, writer = await _raw(gw)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    alone = await _read_all(reader)
    writer.close()
    assert alone.startswith(b"HTTP/1.1 200 ") and alone.endswith(b'{"ok":true}')
    assert b"connection: close" in alone.lower()

    reader, writer = await _raw(gw)
    writer.write(  # one write: /healthz comes while the first answer is in flight
        b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    both = await _read_all(reader)
    writer.close()
    assert both.count(b"HTTP/1.1 200 ") == 2
    assert both.index(b'"openapi"') < both.index(b'{"ok":true}')


async def test_a_full_descriptor_table_pauses_accepting_and_every_queued_client_is_answered(
    gw: GatewayProcess,
) -> None:
    # A flood of idle connections past the process's descriptor limit: accepting pauses (a
    # level-triggered reader would otherwise spin on EMFILE), the rest wait in the kernel's
    # queue, and each is answered once descriptors are free (here by the 408 of its head).
    soft, hard = resource.prlimit(gw.pid, resource.RLIMIT_NOFILE)
    in_use = len(os.listdir(f"/proc/{gw.pid}/fd"))
    resource.prlimit(gw.pid, resource.RLIMIT_NOFILE, (in_use + 8, hard))
    try:
        held = [await _raw(gw) for _ in range(24)]
        async with asyncio.timeout(30):
            while "Accepting paused" not in gw.log.read_text():
                await asyncio.sleep(0.05)
    finally:
        resource.prlimit(gw.pid, resource.RLIMIT_NOFILE, (soft, hard))
    answers = await asyncio.gather(*(_read_all(reader) for reader, _ in held))
    for _, writer in held:
        writer.close()
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers), answers
    assert "Accepting again" in gw.log.read_text()
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
        assert (await http.get("/healthz")).status_code == 200
    assert gw.metric(LIMIT_HITS, limit="nofile") >= 1
