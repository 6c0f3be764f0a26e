"""The gateway's HTTP API and WebSocket ops: validation, auth, runs, control, snapshots, operations."""

from __future__ import annotations

import json

import httpx
import msgspec
import pytest
import websockets
from nats.js import JetStreamContext

from agentcast.codec import encode
from agentcast.control import RunRequest
from agentcast.progress import decode_snapshot
from agentcast.subjects import RUNS_STREAM, RUNS_SUBMIT, SESSIONS_BUCKET
from tests.support.events import build_events, publish_events, simple_run, unique_session
from tests.support.gateway import GATEWAY_ENV, GatewayProcess, auth, token, ws_reply

BAD_SESSIONS = ["a.b", "*", ">", "x" * 65, "a b", "a%2Eb", "%3E"]


def _error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, str]:
    assert response.status_code == status, response.text
    error: dict[str, str] = response.json()["error"]
    assert set(error) >= {"code", "message"} and error["message"]
    if code is not None:
        assert error["code"] == code
    return error


@pytest.mark.parametrize("bad", BAD_SESSIONS)
async def test_invalid_session_ids_are_400_json(http: httpx.AsyncClient, bad: str) -> None:
    for path in (f"/v1/sessions/{bad}/events", f"/v1/sessions/{bad}"):
        _error(await http.get(path, headers=auth()), 400, "invalid_session")
    _error(
        await http.post(f"/v1/sessions/{bad}/cancel", headers=auth(("run",))),
        400,
        "invalid_session",
    )
    _error(
        await http.post("/v1/runs", json={"prompt": "hi", "session": bad}, headers=auth(("run",))),
        400,
        "invalid_session",
    )


async def test_path_tricks_and_unknown_routes_are_4xx_json(http: httpx.AsyncClient) -> None:
    _error(await http.get("/v1/sessions/..%2Fx/events", headers=auth()), 404)
    _error(await http.get("/nope"), 404, "not_found")
    _error(await http.delete("/v1/runs"), 405)


async def test_bad_cursors_and_types_are_400(http: httpx.AsyncClient, session_id: str) -> None:
    path = f"/v1/sessions/{session_id}/events"
    for cursor in ("abc", "-1", "0", "1.5", "9" * 30):
        _error(await http.get(path, params={"from": cursor}, headers=auth()), 400, "invalid_cursor")
    _error(await http.get(path, headers={**auth(), "Last-Event-ID": "nope"}), 400, "invalid_cursor")
    _error(
        await http.get(path, params={"from": str(10**15)}, headers=auth()), 400, "invalid_cursor"
    )
    for types in ("nope", "tool.**", "text.delta,bogus.*", "a b"):
        _error(await http.get(path, params={"types": types}, headers=auth()), 400, "invalid_types")
    _error(
        await http.get("/v1/events", params={"sessions": "a.b"}, headers=auth()),
        400,
        "invalid_sessions",
    )


async def test_tokens_missing_invalid_expired_or_out_of_scope(
    http: httpx.AsyncClient, session_id: str
) -> None:
    path = f"/v1/sessions/{session_id}/events"
    _error(await http.get(path), 401, "unauthorized")
    _error(await http.get(path, headers={"Authorization": "Bearer not.a.jwt"}), 401)
    _error(await http.get(path, params={"token": token(ttl_s=-10)}), 401)
    forged = token().rsplit(".", 1)[0] + ".AAAA"
    _error(await http.get(path, headers={"Authorization": f"Bearer {forged}"}), 401)
    _error(
        await http.post("/v1/runs", json={"prompt": "hi"}, headers=auth(("read",))),
        403,
        "forbidden",
    )
    _error(await http.get(path, headers=auth(("run",))), 403, "forbidden")
    team = auth(("read", "run"), sessions="s_a*")
    _error(await http.get("/v1/sessions/s_b1/events", headers=team), 403)
    _error(await http.get("/v1/sessions/s_b1", headers=team), 403)
    _error(await http.post("/v1/sessions/s_b1/cancel", headers=team), 403)
    _error(await http.post("/v1/runs", json={"prompt": "hi", "session": "s_b1"}, headers=team), 403)
    generated = await http.post("/v1/runs", json={"prompt": "hi"}, headers=team)
    assert generated.status_code == 202 and generated.json()["session"].startswith("s_a")


async def test_a_scoped_token_never_reads_another_session_over_websocket(
    gateway: GatewayProcess, js: JetStreamContext
) -> None:
    mine, other = unique_session("s_a"), unique_session("s_b")
    await publish_events(js, build_events(other, simple_run(1)))
    async with websockets.connect(
        f"{gateway.ws_url}?token={token(('read', 'run'), sessions='s_a*')}"
    ) as ws:
        for op in ({"op": "subscribe", "session": other}, {"op": "cancel", "session": other}):
            await ws.send(json.dumps(op))
            assert (await ws_reply(ws))["code"] == "forbidden"
        await ws.send(json.dumps({"op": "subscribe", "session": mine}))
        assert await ws_reply(ws) == {"op": "subscribed", "session": mine}
        await ws.send(json.dumps({"op": "ping", "id": 7}))
        assert await ws_reply(ws) == {"op": "pong", "id": 7}  # nothing of `other` came first


async def test_websocket_refuses_a_missing_token_at_the_handshake(gateway: GatewayProcess) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(gateway.ws_url):
            pass
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["error"]["code"] == "unauthorized"


async def test_malformed_frames_get_error_frames_and_the_socket_stays_usable(
    gateway: GatewayProcess, session_id: str
) -> None:
    limit = int(GATEWAY_ENV["AGENTCAST_WS_MAX_FRAME_BYTES"])
    cases = [
        ("{not json", "bad_frame"),
        ("[1, 2]", "bad_frame"),
        ('{"no": "op"}', "bad_frame"),
        ('{"op": "dance"}', "unknown_op"),
        ('{"op": "subscribe"}', "invalid_session"),
        ('{"op": "subscribe", "session": "a.b"}', "invalid_session"),
        (json.dumps({"op": "subscribe", "session": session_id, "from": "zzz"}), "invalid_cursor"),
        (
            json.dumps({"op": "subscribe", "session": session_id, "types": "tool.*"}),
            "invalid_types",
        ),
        (
            json.dumps({"op": "subscribe", "session": session_id, "types": ["bogus"]}),
            "invalid_types",
        ),
        (json.dumps({"op": "unsubscribe", "session": session_id}), "not_subscribed"),
        (json.dumps({"op": "run", "prompt": ""}), "invalid_prompt"),
        (json.dumps({"op": "ping", "pad": "x" * limit}), "frame_too_large"),
    ]
    async with websockets.connect(f"{gateway.ws_url}?token={token(('read', 'run'))}") as ws:
        for frame, code in cases:
            await ws.send(frame)
            reply = await ws_reply(ws)
            assert (reply["op"], reply["code"]) == ("error", code), frame[:80]
        await ws.send(b'{"op": "ping"}')  # binary frames carry JSON too
        assert await ws_reply(ws) == {"op": "pong"}
    async with websockets.connect(f"{gateway.ws_url}?token={token()}", max_size=None) as ws:
        await ws.send("x" * (limit * 4 + 1))  # over the hard cap: the WebSocket layer closes
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws_reply(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"prompt": ""}, 400, "invalid_prompt"),
        ({"prompt": "   "}, 400, "invalid_prompt"),
        ({"prompt": 42}, 400, "invalid_prompt"),
        ({}, 422, "invalid_request"),
        ({"prompt": "x" * (64 * 1024 + 1)}, 413, "prompt_too_large"),
        ({"prompt": "hi", "options": {"model": "gpt-9"}}, 400, "policy_violation"),
        ({"prompt": "hi", "options": {"cwd": "/"}}, 400, "policy_violation"),
        (
            {"prompt": "hi", "options": {"permission_mode": "bypassPermissions"}},
            400,
            "policy_violation",
        ),
        ({"prompt": "hi", "options": {"max_turns": 0}}, 400, "policy_violation"),
        ({"prompt": "hi", "options": {"max_turns": 10_000}}, 400, "policy_violation"),
        ({"prompt": "hi", "options": {"allowed_tools": ["Bash", "Nuke"]}}, 400, "policy_violation"),
        ({"prompt": "hi", "options": "fast"}, 400, "policy_violation"),
    ],
)
async def test_run_requests_outside_policy_are_4xx(
    http: httpx.AsyncClient, body: dict[str, object], status: int, code: str
) -> None:
    _error(await http.post("/v1/runs", json=body, headers=auth(("run",))), status, code)


async def test_bodies_that_are_not_json_objects_are_4xx(http: httpx.AsyncClient) -> None:
    for content in (b"{bad", b"[]", b"null", b"x" * 200_000):
        response = await http.post(
            "/v1/runs",
            content=content,
            headers={**auth(("run",)), "content-type": "application/json"},
        )
        assert 400 <= response.status_code < 500 and "error" in response.json()


async def test_a_run_request_lands_on_the_work_queue(
    http: httpx.AsyncClient, js: JetStreamContext
) -> None:
    session = unique_session("run")
    prompt = f"list files {session}"
    response = await http.post(
        "/v1/runs",
        json={
            "prompt": prompt,
            "session": session,
            "options": {"max_turns": 3, "allowed_tools": ["Bash"]},
        },
        headers=auth(("run",)),
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["session"] == session and body["run"] == 1
    assert body["events_url"].endswith(f"/v1/sessions/{session}/events")
    assert body["ws_url"].startswith("ws://") and body["ws_url"].endswith("/v1/ws")
    # Read it back from the stream: the last request on the subject is ours (no worker runs here).
    stored = await js.get_last_msg(RUNS_STREAM, RUNS_SUBMIT)
    request = msgspec.json.decode(stored.data, type=RunRequest)
    assert request == RunRequest(
        session=session, prompt=prompt, options={"max_turns": 3, "allowed_tools": ["Bash"]}
    )

    await publish_events(js, build_events(session, simple_run(1)))
    again = await http.post(
        "/v1/runs", json={"prompt": "more", "session": session}, headers=auth(("run",))
    )
    assert again.json()["run"] == 2  # the last run.queued in the session, plus one

    generated = (await http.post("/v1/runs", json={"prompt": "hi"}, headers=auth(("run",)))).json()
    assert generated["session"].startswith("s_") and generated["run"] == 1


async def test_cancel_without_a_worker_is_409_and_a_message_to_no_session_404(
    http: httpx.AsyncClient, gateway: GatewayProcess, session_id: str
) -> None:
    run = auth(("run",))
    _error(await http.post(f"/v1/sessions/{session_id}/cancel", headers=run), 409, "not_running")
    _error(
        await http.post(f"/v1/sessions/{session_id}/messages", json={"text": "go on"}, headers=run),
        404,
        "not_found",
    )
    _error(
        await http.post(f"/v1/sessions/{session_id}/messages", json={"text": ""}, headers=run),
        400,
        "invalid_prompt",
    )
    async with websockets.connect(f"{gateway.ws_url}?token={token(('run',))}") as ws:
        await ws.send(json.dumps({"op": "cancel", "session": session_id, "id": "c1"}))
        assert await ws_reply(ws) == {
            "op": "error", "code": "not_running", "id": "c1",
            "message": f"no run is active in session {session_id!r}",
        }  # fmt: skip


async def test_a_message_to_a_finished_session_no_worker_holds_queues_its_next_run(
    http: httpx.AsyncClient, js: JetStreamContext, session_id: str
) -> None:
    await publish_events(js, build_events(session_id, simple_run()))
    response = await http.post(
        f"/v1/sessions/{session_id}/messages", json={"text": "and then?"}, headers=auth(("run",))
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"session": session_id, "ok": True, "run": 2}
    stored = await js.get_last_msg(RUNS_STREAM, RUNS_SUBMIT)
    request = msgspec.json.decode(stored.data, type=RunRequest)
    assert (request.session, request.prompt) == (session_id, "and then?")


async def test_cancel_reaches_the_worker_that_owns_the_session(
    http: httpx.AsyncClient, nc: object, session_id: str
) -> None:
    asked = []

    async def worker(msg: object) -> None:
        asked.append(json.loads(msg.data))  # type: ignore[attr-defined]
        await msg.respond(b'{"ok": true, "run": 3}')  # type: ignore[attr-defined]

    sub = await nc.subscribe(f"agentcast.ctl.{session_id}", cb=worker)  # type: ignore[attr-defined]
    try:
        await nc.flush()  # type: ignore[attr-defined]
        response = await http.post(f"/v1/sessions/{session_id}/cancel", headers=auth(("run",)))
        assert response.status_code == 200 and response.json() == {
            "session": session_id,
            "ok": True,
            "run": 3,
        }
        response = await http.post(
            f"/v1/sessions/{session_id}/messages",
            json={"text": "and then?"},
            headers=auth(("run",)),
        )
        assert response.status_code == 200
    finally:
        await sub.unsubscribe()
    assert asked == [{"op": "cancel"}, {"op": "message", "text": "and then?"}]


async def test_session_snapshots_come_from_the_kv_bucket(
    http: httpx.AsyncClient, js: JetStreamContext, session_id: str
) -> None:
    kv = await js.key_value(SESSIONS_BUCKET)
    snapshot = {
        "session": session_id,
        "state": "running",
        "run": 1,
        "percent": 12.5,
        "updated_at": 2**62,
    }
    await kv.put(session_id, encode(snapshot))
    whole = msgspec.to_builtins(decode_snapshot(encode(snapshot)))  # with every default
    got = await http.get(f"/v1/sessions/{session_id}", headers=auth())
    assert got.status_code == 200 and got.json() == whole
    listed = await http.get("/v1/sessions", params={"state": "running", "limit": 1}, headers=auth())
    assert listed.json()["sessions"] == [whole]  # newest first
    none = await http.get(
        "/v1/sessions", params={"state": "failed"}, headers=auth(sessions=session_id)
    )
    assert none.json() == {"sessions": []}
    _error(await http.get(f"/v1/sessions/{session_id}x", headers=auth()), 404, "not_found")
    _error(
        await http.get("/v1/sessions", params={"state": "sleepy"}, headers=auth()),
        400,
        "invalid_state",
    )
    _error(
        await http.get("/v1/sessions", params={"limit": 0}, headers=auth()), 422, "invalid_request"
    )


async def test_operations_endpoints(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"ok": True}
    assert (await http.get("/readyz")).json() == {"ready": True}
    metrics = (await http.get("/metrics")).text
    for name in ("connections", "events_out_total", "bytes_out_total", "lagged_disconnects_total",
                 "auth_failures_total", "subscriptions", "upstream_subscriptions"):  # fmt: skip
        assert f"agentcast_gateway_{name}" in metrics
    # The event loop's lag, as a histogram that has observations (a timer every 10 ms).
    lag = [line for line in metrics.splitlines() if line.startswith("agentcast_gateway_loop_lag")]
    count = next(
        line for line in lag if line.startswith("agentcast_gateway_loop_lag_seconds_count")
    )
    assert float(count.rsplit(" ", 1)[1]) > 0
    assert any('le="0.1"' in line for line in lag) and any('le="+Inf"' in line for line in lag)
    docs = await http.get("/openapi.json")
    assert "/v1/sessions/{session}/events" in docs.json()["paths"]
    assert (await http.get("/docs")).status_code == 200
