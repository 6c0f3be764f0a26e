"""Streams per token jti, counted over two gateway processes: 429 / error frame past the limit,
a slot freed at once on close, and a killed gateway's slots freed by its lease."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
import websockets

from agentcast.embedded import EmbeddedNats
from tests.support.gateway import GatewayProcess, token
from tests.support.nats import role_env

LIMIT = 3
_ENV = {"AGENTCAST_MAX_STREAMS_PER_TOKEN": str(LIMIT), "AGENTCAST_STREAM_LEASE_S": "3"}


@pytest.fixture(scope="module")
def pair(
    nats_server: EmbeddedNats, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[GatewayProcess]]:
    """Two gateways for the module's tests (each with its own tokens; the last kills one)."""
    root = tmp_path_factory.mktemp("pair")
    gateways = [
        GatewayProcess(
            nats_server.url, root / f"gw{i}", env={**role_env(nats_server, "gateway"), **_ENV}
        )
        for i in range(2)
    ]
    try:
        for g in gateways:
            g.start()
        yield gateways
    finally:
        for g in gateways:
            g.stop()


async def open_sse(
    stack: AsyncExitStack, http: httpx.AsyncClient, gw: GatewayProcess, tok: str
) -> httpx.Response:
    return await stack.enter_async_context(
        http.stream(
            "GET", f"{gw.url}/v1/events", params={"from": "now"},
            headers={"Authorization": f"Bearer {tok}"},
        )
    )  # fmt: skip


async def admitted_within(http: httpx.AsyncClient, gw: GatewayProcess, tok: str) -> int:
    """Try opening a stream until one is admitted (a hang guard, not a timing): the status."""
    async with asyncio.timeout(60):
        while True:
            async with http.stream(
                "GET", f"{gw.url}/v1/events", params={"from": "now"},
                headers={"Authorization": f"Bearer {tok}"},
            ) as response:  # fmt: skip
                if response.status_code != 429:
                    return response.status_code
            await asyncio.sleep(0.1)


async def test_streams_past_the_limit_of_a_token_over_two_gateways_are_refused_and_freed_on_close(
    pair: list[GatewayProcess],
) -> None:
    a, b = pair
    tok, other = token(), token()
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
        first = await open_sse(stack, http, a, tok)
        assert (await open_sse(stack, http, a, tok)).status_code == 200
        ws = await stack.enter_async_context(websockets.connect(f"{b.ws_url}?token={tok}"))
        await ws.send(json.dumps({"op": "ping"}))
        assert json.loads(await ws.recv())["op"] == "pong"  # the socket holds the third slot
        assert first.status_code == 200

        refused = await http.get(f"{b.url}/v1/events", headers={"Authorization": f"Bearer {tok}"})
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "too_many_streams"
        assert int(refused.headers["Retry-After"]) >= 1
        async with websockets.connect(f"{a.ws_url}?token={tok}") as extra:
            frame = json.loads(await extra.recv())
            assert frame["op"] == "error" and frame["code"] == "too_many_streams"
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await extra.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert b.metric("agentcast_gateway_limit_hits_total", limit="max_streams_per_token") >= 1
        assert a.metric("agentcast_gateway_limit_hits_total", limit="max_streams_per_token") >= 1
        # Another token of the same user is counted on its own.
        assert (await open_sse(stack, http, b, other)).status_code == 200

        await first.aclose()  # one slot of `tok` back: gateway b admits one more
        assert await admitted_within(http, b, tok) == 200


async def test_a_burst_of_one_tokens_streams_admits_exactly_the_limit(
    pair: list[GatewayProcess],
) -> None:
    a, _ = pair
    tok = token()
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(timeout=30)) for _ in range(3 * LIMIT)
        ]
        answers = await asyncio.gather(*(open_sse(stack, http, a, tok) for http in clients))
        codes = sorted(r.status_code for r in answers)
    assert codes == [200] * LIMIT + [429] * (2 * LIMIT)


async def test_durable_streams_live_reads_take_slots_and_catch_up_reads_do_not(
    pair: list[GatewayProcess],
) -> None:
    a, b = pair
    tok = token()
    auth = {"Authorization": f"Bearer {tok}"}
    path = "/ds/v1/sessions/limits_ds_session"
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=30))

        async def ds_sse(gw: GatewayProcess) -> httpx.Response:
            return await stack.enter_async_context(
                http.stream("GET", f"{gw.url}{path}", params={"offset": "-1", "live": "sse"},
                            headers=auth)
            )  # fmt: skip

        first = await ds_sse(a)
        assert first.status_code == 200
        assert (await ds_sse(b)).status_code == 200
        assert (await open_sse(stack, http, a, tok)).status_code == 200  # the third slot
        # A catch-up read is one answer, not a stream: no slot needed.
        assert (
            await http.get(f"{b.url}{path}", params={"offset": "-1"}, headers=auth)
        ).status_code == 200
        for live in ("sse", "long-poll"):
            refused = await http.get(
                f"{b.url}{path}", params={"offset": "now", "live": live}, headers=auth
            )
            assert refused.status_code == 429, (live, refused.text)
            assert refused.json()["error"]["code"] == "too_many_streams"
        await first.aclose()
        async with asyncio.timeout(60):  # a hang guard: the freed slot is taken again
            while (again := await ds_sse(b)).status_code == 429:
                await again.aclose()
                await asyncio.sleep(0.1)
        assert again.status_code == 200


async def test_a_killed_gateways_slots_are_freed_by_its_lease(pair: list[GatewayProcess]) -> None:
    a, b = pair
    tok = token()
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
        for _ in range(LIMIT):
            assert (await open_sse(stack, http, a, tok)).status_code == 200
        assert (
            await http.get(f"{b.url}/v1/events", headers={"Authorization": f"Bearer {tok}"})
        ).status_code == 429
        a.kill()  # no clean shutdown: its slots stay recorded until its lease ends
        assert await admitted_within(http, b, tok) == 200


async def test_the_limit_holds_over_the_worker_processes_of_one_gateway(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    gw = GatewayProcess(
        nats_server.url, tmp_path / "gw", None, "--workers", "2",
        env={**role_env(nats_server, "gateway"), **_ENV},
    )  # fmt: skip
    await asyncio.to_thread(gw.start)
    tok = token()
    try:
        async with AsyncExitStack() as stack:
            # New connections each: the kernel spreads them over the two processes.
            for _ in range(LIMIT):
                http = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
                assert (await open_sse(stack, http, gw, tok)).status_code == 200
            async with httpx.AsyncClient(timeout=30) as http:
                refused = await http.get(
                    f"{gw.url}/v1/events", headers={"Authorization": f"Bearer {tok}"}
                )
            assert refused.status_code == 429, refused.text
    finally:
        gw.stop()
