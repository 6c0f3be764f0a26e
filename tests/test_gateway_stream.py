"""Gateway streaming against a real gateway process and nats-server: order, fan-out, resume, replay."""

from __future__ import annotations

import asyncio
import json

import httpx
import websockets
from nats.js import JetStreamContext

from agentcast.events import StatusData, TextDeltaData
from agentcast.subjects import EVENTS_STREAM
from tests.support.events import build_events, publish_events, simple_run, unique_session
from tests.support.gateway import GatewayProcess, envelopes, read_sse, token, ws_events, ws_reply


async def test_a_run_reaches_sse_and_ws_clients_in_seq_order(
    gateway: GatewayProcess, http: httpx.AsyncClient, js: JetStreamContext, session_id: str
) -> None:
    events = build_events(session_id, simple_run(20))
    cursors = await publish_events(js, events)
    got = await read_sse(http, f"/v1/sessions/{session_id}/events", len(events))
    assert [e["seq"] for e in envelopes(got)] == list(range(1, len(events) + 1))
    assert [e.id for e in got] == [str(c) for c in cursors]
    assert [e.event for e in got] == [json.loads(e.data)["type"] for e in got]
    assert got[-1].event == "run.completed"

    async with websockets.connect(f"{gateway.ws_url}?token={token()}") as ws:
        await ws.send(json.dumps({"op": "subscribe", "session": session_id, "from": "start"}))
        assert await ws_reply(ws) == {"op": "subscribed", "session": session_id}
        frames = await ws_events(ws, len(events))
    assert [f["event"]["seq"] for f in frames] == list(range(1, len(events) + 1))
    assert [f["cursor"] for f in frames] == [str(c) for c in cursors]


async def test_fifty_viewers_of_one_session_get_the_identical_sequence(
    http: httpx.AsyncClient, js: JetStreamContext, session_id: str
) -> None:
    events = build_events(session_id, simple_run(60))
    await publish_events(js, events[:10])
    viewers = [
        asyncio.create_task(read_sse(http, f"/v1/sessions/{session_id}/events", len(events)))
        for _ in range(50)
    ]
    await asyncio.sleep(0)  # some viewers join during the publishing below, some before
    await publish_events(js, events[10:])
    results = await asyncio.gather(*viewers)
    first = [(e.id, e.data) for e in results[0]]
    assert [json.loads(d)["seq"] for _, d in first] == list(range(1, len(events) + 1))
    for result in results[1:]:
        assert [(e.id, e.data) for e in result] == first


async def test_sse_reconnect_with_last_event_id_gets_the_rest_exactly_once(
    http: httpx.AsyncClient, js: JetStreamContext, session_id: str
) -> None:
    events = build_events(session_id, simple_run(30))
    await publish_events(js, events[:15])
    first = await read_sse(http, f"/v1/sessions/{session_id}/events", 12)  # disconnects mid-run
    await publish_events(js, events[15:])
    rest = await read_sse(
        http, f"/v1/sessions/{session_id}/events", len(events) - 12, headers={
            "Authorization": f"Bearer {token()}", "Last-Event-ID": first[-1].id,
        },
    )  # fmt: skip
    seqs = [e["seq"] for e in envelopes(first + rest)]
    assert seqs == list(range(1, len(events) + 1))


async def test_ws_resubscribe_from_cursor_gets_the_rest_exactly_once(
    gateway: GatewayProcess, js: JetStreamContext, session_id: str
) -> None:
    events = build_events(session_id, simple_run(30))
    await publish_events(js, events[:15])
    url = f"{gateway.ws_url}?token={token()}"
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"op": "subscribe", "session": session_id}))
        first = await ws_events(ws, 9)
    await publish_events(js, events[15:])
    async with websockets.connect(url) as ws:
        await ws.send(
            json.dumps({"op": "subscribe", "session": session_id, "from": first[-1]["cursor"]})
        )
        rest = await ws_events(ws, len(events) - 9)
        await ws.send(json.dumps({"op": "ping"}))
        assert await ws_reply(ws) == {"op": "pong"}  # and no extra event came before it
    assert [f["event"]["seq"] for f in first + rest] == list(range(1, len(events) + 1))


async def test_late_joiner_from_start_has_no_gap_or_duplicate_at_the_seam(
    http: httpx.AsyncClient, js: JetStreamContext, session_id: str
) -> None:
    events = build_events(
        session_id, [TextDeltaData(index=0, text=f"t{i} " * 20) for i in range(400)]
    )

    async def produce() -> None:
        for i in range(0, len(events), 10):
            await publish_events(js, events[i : i + 10])
            await asyncio.sleep(0.002)

    producer = asyncio.create_task(produce())
    await publish_events(js, [])
    joiners = []
    for _ in range(4):  # join at different points of the run, each from the start
        joiners.append(
            asyncio.create_task(read_sse(http, f"/v1/sessions/{session_id}/events", len(events)))
        )
        await asyncio.sleep(0.05)
    await producer
    for got in await asyncio.gather(*joiners):
        assert [e["seq"] for e in envelopes(got)] == list(range(1, len(events) + 1))


async def test_types_filter_keeps_exact_types_and_prefixes_at_any_depth(
    gateway: GatewayProcess, http: httpx.AsyncClient, js: JetStreamContext, session_id: str
) -> None:
    events = build_events(session_id, simple_run(5))
    await publish_events(js, events)
    wanted = [
        e
        for e in envelopes_of(events)
        if e["type"] == "text.delta" or e["type"].startswith("tool.")
    ]
    got = await read_sse(
        http,
        f"/v1/sessions/{session_id}/events",
        len(wanted),
        params={"types": "text.delta,tool.*"},
    )
    assert [e["seq"] for e in envelopes(got)] == [e["seq"] for e in wanted]
    single = await read_sse(
        http, f"/v1/sessions/{session_id}/events", 1, params={"types": "run.completed"}
    )
    assert single[0].event == "run.completed"

    async with websockets.connect(f"{gateway.ws_url}?token={token()}") as ws:
        await ws.send(json.dumps({"op": "subscribe", "session": session_id, "types": ["tool.*"]}))
        frames = await ws_events(ws, 3)
    assert [f["event"]["type"] for f in frames] == ["tool.started", "tool.called", "tool.result"]


async def test_firehose_follows_a_glob_and_never_leaks_outside_the_token(
    http: httpx.AsyncClient, js: JetStreamContext
) -> None:
    team = unique_session("team")
    mine_a, mine_b, other = f"{team}_a", f"{team}_b", unique_session("other")
    marker = await publish_events(js, build_events(mine_a, [StatusData(status="marker")]))
    await publish_events(js, build_events(other, [StatusData(status="secret")] * 3))
    await publish_events(js, build_events(mine_b, [StatusData(status="b")] * 3))
    await publish_events(js, build_events(mine_a, [StatusData(status="a")] * 2, first_seq=2))
    await publish_events(js, build_events(other, [StatusData(status="secret")], first_seq=4))
    await publish_events(js, build_events(mine_b, [StatusData(status="b")], first_seq=4))

    scoped = {"Authorization": f"Bearer {token(sessions=f'{team}_*')}"}
    got = envelopes(
        await read_sse(http, "/v1/events", 6, params={"from": str(marker[0])}, headers=scoped)
    )
    assert {e["session"] for e in got} == {mine_a, mine_b}
    assert [e["seq"] for e in got if e["session"] == mine_b] == [1, 2, 3, 4]

    explicit = envelopes(await read_sse(
        http, "/v1/events", 4, params={"from": str(marker[0]), "sessions": f"{team}_b*"}, headers=scoped
    ))  # fmt: skip
    assert {e["session"] for e in explicit} == {mine_b}

    wider = await http.get("/v1/events", params={"sessions": "*"}, headers=scoped)
    assert wider.status_code == 403 and wider.json()["error"]["code"] == "forbidden"
    assert (await http.get(f"/v1/sessions/{other}/events", headers=scoped)).status_code == 403


async def test_a_cursor_older_than_retention_is_cursor_expired_naming_the_earliest(
    gateway: GatewayProcess, http: httpx.AsyncClient, js: JetStreamContext, session_id: str
) -> None:
    cursors = await publish_events(js, build_events(session_id, simple_run(7)))
    # Retention, in miniature and on this test's session only: keep its last 3 events.
    await js.purge_stream(EVENTS_STREAM, subject=f"agentcast.evt.{session_id}.>", keep=3)
    response = await http.get(
        f"/v1/sessions/{session_id}/events",
        params={"from": str(cursors[1])},
        headers={"Authorization": f"Bearer {token()}"},
    )
    assert response.status_code == 410
    error = response.json()["error"]
    assert error["code"] == "cursor_expired" and error["earliest"] == str(cursors[-3])
    still = await read_sse(
        http, f"/v1/sessions/{session_id}/events", 2, params={"from": str(cursors[-3])}
    )
    assert [e.id for e in still] == [str(c) for c in cursors[-2:]]

    async with websockets.connect(f"{gateway.ws_url}?token={token()}") as ws:
        await ws.send(
            json.dumps({"op": "subscribe", "session": session_id, "from": str(cursors[0])})
        )
        frame = await ws_reply(ws)
    assert (
        frame["op"] == "error"
        and frame["code"] == "cursor_expired"
        and frame["earliest"] == str(cursors[-3])
    )


def envelopes_of(events: list[object]) -> list[dict[str, object]]:
    from agentcast.codec import encode

    return [json.loads(encode(e)) for e in events]
