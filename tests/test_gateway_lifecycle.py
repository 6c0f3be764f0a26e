"""The gateway process itself: killed and restarted between connections, and stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import websockets
from httpx_sse import aconnect_sse
from nats.js import JetStreamContext

from agentcast.embedded import EmbeddedNats
from tests.support.events import build_events, publish_events, simple_run
from tests.support.gateway import (
    GatewayProcess,
    auth,
    envelopes,
    read_sse,
    token,
    ws_events,
    ws_reply,
)
from tests.support.nats import role_env


async def test_resume_is_exact_across_a_gateway_kill_and_restart(
    own_gateway: GatewayProcess, js: JetStreamContext, session_id: str
) -> None:
    events = build_events(session_id, simple_run(30))
    await publish_events(js, events[:14])
    own_gateway.start()
    path = f"/v1/sessions/{session_id}/events"
    async with httpx.AsyncClient(base_url=own_gateway.url, timeout=20) as http:
        first = await read_sse(http, path, 10)
    async with websockets.connect(f"{own_gateway.ws_url}?token={token()}") as ws:
        await ws.send(json.dumps({"op": "subscribe", "session": session_id}))
        ws_first = await ws_events(ws, 7)

    own_gateway.kill()  # SIGKILL: no goodbye, nothing flushed
    await publish_events(js, events[14:])
    own_gateway.start()

    async with httpx.AsyncClient(base_url=own_gateway.url, timeout=20) as http:
        rest = await read_sse(
            http, path, len(events) - 10, headers={**auth(), "Last-Event-ID": first[-1].id}
        )
    assert [e["seq"] for e in envelopes(first + rest)] == list(range(1, len(events) + 1))
    async with websockets.connect(f"{own_gateway.ws_url}?token={token()}") as ws:
        await ws.send(
            json.dumps({"op": "subscribe", "session": session_id, "from": ws_first[-1]["cursor"]})
        )
        ws_rest = await ws_events(ws, len(events) - 7)
    assert [f["event"]["seq"] for f in ws_first + ws_rest] == list(range(1, len(events) + 1))


async def test_sigterm_tells_sse_clients_to_retry_closes_websockets_1012_and_exits(
    own_gateway: GatewayProcess, js: JetStreamContext, session_id: str
) -> None:
    await publish_events(js, build_events(session_id, simple_run(3)))
    own_gateway.start()
    lines: list[str] = []
    async with (
        httpx.AsyncClient(base_url=own_gateway.url, timeout=20) as http,
        websockets.connect(f"{own_gateway.ws_url}?token={token()}") as ws,
    ):
        await ws.send(json.dumps({"op": "subscribe", "session": session_id, "from": "now"}))
        assert (await ws_reply(ws))["op"] == "subscribed"
        async with aconnect_sse(
            http, "GET", f"/v1/sessions/{session_id}/events", headers=auth()
        ) as source:
            stream = source.response.aiter_lines()
            async with asyncio.timeout(20):
                while len([x for x in lines if x.startswith("data:")]) < 10:
                    lines.append(await anext(stream))
                own_gateway.terminate()
                async for line in stream:  # ends: the gateway finished the response
                    lines.append(line)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(20):
                while True:
                    await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    tail = lines[lines.index(next(x for x in reversed(lines) if x.startswith("data:"))) :]
    retry = [int(x.split(":", 1)[1]) for x in tail if x.startswith("retry:")]
    assert len(retry) == 1 and 500 <= retry[0] <= 5000
    assert own_gateway.proc is not None
    assert await asyncio.to_thread(own_gateway.proc.wait, 30) is not None


class _CuttableProxy:
    """A TCP proxy to NATS that the test can cut (and keep refusing) to force a reconnect."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.refusing = False
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(1 << 16):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        self.refusing = True
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()


async def test_events_missed_while_nats_was_unreachable_are_refilled_from_jetstream(
    nats_server: EmbeddedNats, tmp_path: Path, js: JetStreamContext, session_id: str
) -> None:
    proxy = _CuttableProxy(nats_server.port)
    gateway = GatewayProcess(
        f"nats://127.0.0.1:{await proxy.start()}",
        tmp_path / "gw",
        env=role_env(nats_server, "gateway"),
    )
    events = build_events(session_id, simple_run(25))
    await publish_events(js, events[:10])
    try:
        await asyncio.to_thread(gateway.start)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=20) as http:
            reader = asyncio.create_task(
                read_sse(http, f"/v1/sessions/{session_id}/events", len(events))
            )
            while gateway.metric("agentcast_gateway_events_out_total", transport="sse") < 10:
                await asyncio.sleep(0.02)
            proxy.cut()  # the gateway's NATS connection drops; core NATS delivers nothing meanwhile
            while (await http.get("/readyz")).status_code == 200:
                await asyncio.sleep(0.05)
            await publish_events(js, events[10:20])
            proxy.refusing = False
            while (await http.get("/readyz")).status_code != 200:
                await asyncio.sleep(0.05)
            await publish_events(js, events[20:])
            got = await reader
        assert [e["seq"] for e in envelopes(got)] == list(range(1, len(events) + 1))
        assert gateway.metric("agentcast_gateway_gap_refills_total") >= 1
    finally:
        gateway.kill()
        await proxy.stop()
