"""Run submissions per token (429 rate_limited), the queued-runs bound (503 queue_full, held by
JetStream itself), and session ids that are empty or invalid wherever one is expected."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import websockets
from nats.js.errors import APIError

from agentcast.bus import ensure_streams
from agentcast.subjects import RUNS_SUBMIT
from tests.support.gateway import GatewayProcess, auth, token, ws_reply
from tests.support.limits import LIMIT_HITS, gateway_fixture
from tests.support.nats import PrivateNats, role_env

gw = gateway_fixture({"AGENTCAST_RUNS_PER_TOKEN_PER_S": "0.05"})


async def test_run_submissions_past_the_token_bucket_get_429_with_retry_after(
    gw: GatewayProcess,
) -> None:
    tok = token(("run",))
    headers = {"Authorization": f"Bearer {tok}"}
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
        answers = [
            await http.post("/v1/runs", json={"prompt": "hi"}, headers=headers) for _ in range(6)
        ]
        # 0.05 runs/s (bursts of at least one): one run, then none for 20 s.
        assert answers[0].status_code == 202
        refused = answers[-1]
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) >= 1
        other = await http.post("/v1/runs", json={"prompt": "hi"}, headers=auth(("run",)))
        assert other.status_code == 202  # another token has its own bucket
    async with websockets.connect(f"{gw.ws_url}?token={tok}") as ws:
        await ws.send(json.dumps({"op": "run", "prompt": "hi", "id": 1}))
        frame = await ws_reply(ws)
        assert frame["op"] == "error" and frame["code"] == "rate_limited" and frame["id"] == 1
    assert gw.metric(LIMIT_HITS, limit="runs_per_token_per_s") >= 2


async def test_a_full_run_queue_gets_503_queue_full_and_bounds_direct_publishers_too(
    private_nats: PrivateNats, tmp_path: Path
) -> None:
    bound = 3
    # As `agentcast up` does: the admin applies the settings to the stream.
    await ensure_streams(
        private_nats.nc.jetstream(), private_nats.settings.replace(max_queued_runs=bound)
    )
    gw = GatewayProcess(
        private_nats.server.url, tmp_path / "gw",
        env={**role_env(private_nats.server, "gateway"), "AGENTCAST_MAX_QUEUED_RUNS": str(bound)},
    )  # fmt: skip
    await asyncio.to_thread(gw.start)
    try:
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
            for _ in range(bound):
                ok = await http.post("/v1/runs", json={"prompt": "hi"}, headers=auth(("run",)))
                assert ok.status_code == 202, ok.text
            full = await http.post("/v1/runs", json={"prompt": "hi"}, headers=auth(("run",)))
        assert full.status_code == 503, full.text
        assert full.json()["error"]["code"] == "queue_full"
        assert int(full.headers["Retry-After"]) >= 1
        assert gw.metric(LIMIT_HITS, limit="max_queued_runs") == 1
        with pytest.raises(APIError):  # straight to NATS: JetStream refuses it the same way
            await private_nats.nc.jetstream().publish(
                RUNS_SUBMIT, b'{"session":"s_x","prompt":"p"}'
            )
    finally:
        gw.stop()


@pytest.mark.parametrize("bad", ["", " ", "a.b", "*", "x" * 65, "é"])
async def test_an_empty_or_invalid_session_id_is_a_400_in_body_path_and_query(
    gw: GatewayProcess, bad: str
) -> None:
    headers = auth(("read", "run"))
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
        body = await http.post("/v1/runs", json={"prompt": "hi", "session": bad}, headers=headers)
        assert body.status_code == 400 and body.json()["error"]["code"] == "invalid_session", (
            body.text
        )
        path = await http.get(f"/v1/sessions/{bad or '%20'}/events", headers=headers)
        assert 400 <= path.status_code < 500 and "error" in path.json()
        if bad in ("", " ", "a.b", "é"):  # the others are globs (`*`) or literal ones
            query = await http.get("/v1/events", params={"sessions": bad}, headers=headers)
            assert query.status_code == 400, query.text


async def test_an_empty_session_id_in_a_websocket_frame_is_an_error_frame(
    gw: GatewayProcess,
) -> None:
    async with websockets.connect(f"{gw.ws_url}?token={token(('read', 'run'))}") as ws:
        for op in ({"op": "subscribe", "session": ""}, {"op": "run", "prompt": "p", "session": ""},
                   {"op": "cancel", "session": ""}, {"op": "message", "session": "", "text": "t"},
                   {"op": "unsubscribe", "session": ""}):  # fmt: skip
            await ws.send(json.dumps(op))
            frame = await ws_reply(ws)
            assert frame["op"] == "error" and frame["code"] == "invalid_session", (op, frame)
        await ws.send(json.dumps({"op": "ping", "id": 2}))
        assert await ws_reply(ws) == {"op": "pong", "id": 2}
