"""A WebSocket's subscriptions and frame rate: `too_many_streams` / `rate_limited` error frames,
close 1008 on a sustained flood, and the other sockets still served."""

from __future__ import annotations

import asyncio
import json

import websockets

from tests.support.gateway import GatewayProcess, token, ws_reply
from tests.support.limits import LIMIT_HITS, gateway_fixture

gw = gateway_fixture(
    {
        "AGENTCAST_MAX_SUBSCRIPTIONS_PER_SOCKET": "3",
        "AGENTCAST_WS_FRAMES_PER_S": "20",
        "AGENTCAST_WS_FLOOD_CLOSE_AFTER": "50",
    }
)


async def test_subscriptions_past_the_limit_of_a_socket_get_an_error_frame(
    gw: GatewayProcess, session_id: str
) -> None:
    async with websockets.connect(f"{gw.ws_url}?token={token()}") as ws:
        for i in range(3):
            await ws.send(
                json.dumps({"op": "subscribe", "session": f"{session_id}_{i}", "from": "now"})
            )
            assert (await ws_reply(ws))["op"] == "subscribed"
        await ws.send(json.dumps({"op": "subscribe", "session": f"{session_id}_x", "id": 9}))
        frame = await ws_reply(ws)
        assert frame["op"] == "error" and frame["code"] == "too_many_streams" and frame["id"] == 9
        # Unsubscribing frees a place on the socket.
        await ws.send(json.dumps({"op": "unsubscribe", "session": f"{session_id}_0"}))
        assert (await ws_reply(ws))["op"] == "ack"
        await ws.send(json.dumps({"op": "subscribe", "session": f"{session_id}_x", "from": "now"}))
        assert (await ws_reply(ws))["op"] == "subscribed"
    assert gw.metric(LIMIT_HITS, limit="max_subscriptions_per_socket") >= 1


async def test_a_frame_flood_gets_rate_limited_frames_then_1008_and_others_are_served(
    gw: GatewayProcess,
) -> None:
    async with (
        websockets.connect(f"{gw.ws_url}?token={token()}") as flood,
        websockets.connect(f"{gw.ws_url}?token={token()}") as calm,
    ):
        replies: list[dict[str, object]] = []

        async def read_flood() -> int | None:
            try:
                async for raw in flood:
                    replies.append(json.loads(raw))
            except websockets.ConnectionClosed:
                pass
            return flood.close_code

        reader = asyncio.create_task(read_flood())
        try:
            async with asyncio.timeout(60):
                for i in range(100_000):
                    await flood.send(json.dumps({"op": "ping", "id": i}))
                    if reader.done():
                        break
        except websockets.ConnectionClosed:
            pass
        async with asyncio.timeout(60):
            code = await reader
        assert code == 1008
        ops = {(r["op"], r.get("code")) for r in replies}
        assert ("pong", None) in ops and ("error", "rate_limited") in ops
        await calm.send(json.dumps({"op": "ping", "id": 1}))
        assert await ws_reply(calm) == {"op": "pong", "id": 1}
    assert gw.metric(LIMIT_HITS, limit="ws_frames_per_s") >= 50
