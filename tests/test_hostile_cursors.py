"""Errors a client can act on: `invalid_cursor` for a malformed, out-of-range or never-issued
cursor (SSE and WS), with no JetStream internals; heartbeats due within one interval."""

from __future__ import annotations

import json
from types import SimpleNamespace

import httpx
import pytest
import websockets

from gateway.hub import HEARTBEAT_PASSES
from gateway.sink import Sink
from tests.support.gateway import GatewayProcess, auth, token, ws_reply

_BAD = ["99999999999999999999", "18446744073709551616", "abc", "-1", "0", "1e5", "7 x"]


@pytest.mark.parametrize("cursor", _BAD)
async def test_a_malformed_or_out_of_range_cursor_is_invalid_cursor_on_sse_and_ws(
    gateway: GatewayProcess, session_id: str, cursor: str
) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        for answer in (
            await http.get(
                f"/v1/sessions/{session_id}/events", headers={**auth(), "Last-Event-ID": cursor}
            ),
            await http.get(
                f"/v1/sessions/{session_id}/events", params={"from": cursor}, headers=auth()
            ),
            await http.get("/v1/events", params={"from": cursor}, headers=auth()),
        ):
            assert answer.status_code == 400, answer.text
            error = answer.json()["error"]
            assert error["code"] == "invalid_cursor"
            assert "JetStream" not in error["message"] and "Status" not in error["message"]
    async with websockets.connect(f"{gateway.ws_url}?token={token()}") as ws:
        await ws.send(json.dumps({"op": "subscribe", "session": session_id, "from": cursor}))
        frame = await ws_reply(ws)
        assert frame["op"] == "error" and frame["code"] == "invalid_cursor", frame


async def test_a_cursor_past_the_end_of_the_stream_was_never_issued(
    gateway: GatewayProcess, session_id: str
) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        answer = await http.get(
            f"/v1/sessions/{session_id}/events", headers={**auth(), "Last-Event-ID": str(2**63)}
        )
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_cursor"


def test_a_heartbeat_is_due_at_most_one_interval_after_the_last_frame() -> None:
    """The hub makes HEARTBEAT_PASSES passes per interval; a frame may come just after one."""
    sink = SimpleNamespace(active=False, idle_passes=0)
    due = Sink.heartbeat_due.__get__(sink)
    sink.active = True  # a frame came during the pass before this one
    passes_until_beat = next(n for n in range(1, 10) if due(HEARTBEAT_PASSES))
    # The frame came after pass 0 at the earliest: the beat is within HEARTBEAT_PASSES passes.
    assert passes_until_beat == HEARTBEAT_PASSES
    idle = next(n for n in range(1, 10) if due(HEARTBEAT_PASSES))  # then, idle: every 3/4
    assert idle == HEARTBEAT_PASSES - 1
