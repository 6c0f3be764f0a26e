"""One writer per session: a second writer is refused by JetStream, forgeries are kept out.

Against a real nats-server: the publisher (a zombie from a stale head, a
second writer at the head), the archiver and the metrics consumer as real
processes (a forged repeated seq, a forged far-ahead seq), and the gateway's
resume cursors.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import websockets
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.errors import APIError

from agentcast.codec import encode
from agentcast.embedded import free_port
from agentcast.errors import WriterConflict
from agentcast.events import RunFailedData, StatusData, TextDeltaData, make_event, type_of
from agentcast.settings import Settings
from agentcast.subjects import EVENTS_STREAM, ctl_subject, event_subject, session_events
from consumers.archive.files import iter_archive, session_of
from consumers.archive.verify import verify_file
from producer.acks import AckRouter
from producer.head import WRONG_LAST_SEQUENCE, expect_after, last_event
from producer.publisher import SessionPublisher
from producer.stamp import stamp
from tests.support.events import build_events, publish_events, simple_run, unique_session
from tests.support.gateway import GatewayProcess, read_sse, token, ws_reply
from tests.support.progress import snapshots_after_each
from tests.support.roles import next_stream_seq, wait_until
from tests.support.scripted import ScriptedModel
from tests.support.worker import follow, processes_in, running_worker, submit, worker_settings
from tests.test_archiver import archiver, records, sealed
from tests.test_metrics import Snapshots, metrics_role
from tests.test_publisher import read_session

pytestmark = pytest.mark.timeout(120)


async def _stream_seq_of(js: JetStreamContext, session: str, seq: int) -> int:
    """Where event `seq` of a session is stored (walking the session's messages only)."""
    at = 1
    for _ in range(seq):
        msg = await js.get_msg(
            EVENTS_STREAM, seq=at, subject=session_events(session), next=True, direct=True
        )
        if json.loads(msg.data or b"{}")["seq"] == seq:
            return msg.seq or 0
        at = (msg.seq or 0) + 1
    raise AssertionError(f"seq {seq} of {session} not stored")


async def test_a_zombie_from_a_stale_head_is_refused_and_never_doubles_a_seq(
    nc: Client, js: JetStreamContext, session_id: str
) -> None:
    acks = await AckRouter(nc).start()
    rightful = SessionPublisher(acks, session_id, next_seq=1, max_msg_size=1 << 20)
    for i in range(10):
        await rightful.emit(TextDeltaData(index=0, text=f"real {i} "), run=1)
    await rightful.drain()
    # A worker that lost its claim after event 5 and still thinks it owns the session.
    zombie = SessionPublisher(
        acks,
        session_id,
        next_seq=6,
        last_stream_seq=await _stream_seq_of(js, session_id, 5),
        max_msg_size=1 << 20,
    )
    await zombie.emit(TextDeltaData(index=0, text="zombie "), run=1)
    with pytest.raises(WriterConflict) as caught:
        await zombie.close(timeout_s=30)
    assert caught.value.session == session_id and caught.value.seq == 6
    assert caught.value.found_seq == 10
    with pytest.raises(WriterConflict):
        await zombie.emit(TextDeltaData(index=0, text="more"), run=1)
    await rightful.emit(TextDeltaData(index=0, text="real 10 "), run=1)
    await rightful.close(timeout_s=30)
    events = await read_session(js, session_id)
    assert [e.seq for e in events] == list(range(1, 12))
    assert all(e.data.text.startswith("real") for e in events)


async def test_a_second_writer_at_the_head_makes_the_rightful_run_fail_loudly_once(
    nc: Client, js: JetStreamContext, session_id: str
) -> None:
    acks = await AckRouter(nc).start()
    rightful = SessionPublisher(acks, session_id, next_seq=1, max_msg_size=1 << 20)
    for i in range(5):
        await rightful.emit(TextDeltaData(index=0, text=f"real {i} "), run=1)
    await rightful.drain()
    # Another writer that read the head just now (seq 5) gets in first.
    intruder = SessionPublisher(
        acks,
        session_id,
        next_seq=6,
        last_stream_seq=await _stream_seq_of(js, session_id, 5),
        max_msg_size=1 << 20,
    )
    await intruder.emit(TextDeltaData(index=0, text="intruder "), run=1)
    await intruder.drain()
    await rightful.emit(TextDeltaData(index=0, text="real 5 "), run=1)
    with pytest.raises(WriterConflict) as caught:
        await rightful.drain()
    assert caught.value.code == "writer_conflict" and caught.value.found_seq == 6
    # What the conversation does then: close the run, if its head allows.
    await rightful.emit(
        RunFailedData(error=str(caught.value), kind="writer_conflict"), run=1, after_failure=True
    )
    with pytest.raises(WriterConflict):
        await rightful.close(timeout_s=30)
    events = await read_session(js, session_id)
    assert [e.seq for e in events] == list(range(1, 8))  # never two events with one seq
    assert [type_of(e) for e in events][-1] == "run.failed"
    assert events[-1].data.kind == "writer_conflict"
    await intruder.close(timeout_s=1)


def _forged(session: str, seq: int, text: str) -> tuple[str, bytes]:
    event = make_event(
        TextDeltaData(index=0, text=text),
        id=f"forged-{session}-{seq}",
        session=session,
        run=1,
        seq=seq,
        ts=1,
    )
    return event_subject(session, type_of(event)), encode(event)


async def test_forged_repeated_and_far_ahead_seqs_are_quarantined_and_change_no_snapshot(
    js: JetStreamContext, settings: Settings, tmp_path: Path
) -> None:
    start = await next_stream_seq(js)
    port = free_port()
    metrics = metrics_role(settings, tmp_path, start, port)
    metrics.env["AGENTCAST_GAP_TIMEOUT_S"] = "2"
    arc = archiver(settings, tmp_path, "archive", start, "--metrics-port", str(free_port()))
    arc.env["AGENTCAST_GAP_TIMEOUT_S"] = "2"
    repeat, ahead = unique_session("rep"), unique_session("far")
    real = {s: build_events(s, simple_run(6)) for s in (repeat, ahead)}
    cursors = {s: await publish_events(js, events[:4]) for s, events in real.items()}
    # As an admin could: raw publishes without the expected-sequence header.
    subject, payload = _forged(repeat, 3, "FORGED repeat")
    forged_repeat = (await js.publish(subject, payload)).seq
    subject, payload = _forged(ahead, 50, "FORGED far ahead")
    forged_ahead = (await js.publish(subject, payload)).seq
    for s, events in real.items():  # the real writers go on, and end their run before seq 50
        cursors[s] += await publish_events(js, events[4:])
    metrics.start()
    arc.start()
    try:
        root = tmp_path / "archive"
        await wait_until(lambda: sealed(root, {repeat, ahead}), 60, "both sessions sealed")
        snapshots = Snapshots(js)
        for s, events in real.items():
            snap = await snapshots.wait_seq(s, len(events))
            assert snap.state == "completed" and snap.last_seq == len(events)
            expected = snapshots_after_each(events)[-1]
            assert (snap.text_chars, snap.tool_calls, snap.turns) == (
                expected.text_chars,
                expected.tool_calls,
                expected.turns,
            )
        text = ""
        for _ in range(100):
            async with httpx.AsyncClient() as client:
                text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            if 'reason="far_ahead"} 1.0' in text:
                break
            await asyncio.sleep(0.1)
        assert 'agentcast_suspect_events_total{consumer="metrics",reason="far_ahead"} 1.0' in text
    finally:
        assert arc.stop() == 0, arc.output()[-3000:]
        assert metrics.stop() == 0, metrics.output()[-3000:]
    files = {session_of(p): p for p in iter_archive(root)}
    for s, events in real.items():
        lines = [r for r in records(files[s]) if "seq" in r]
        assert [r["seq"] for r in lines] == list(range(1, len(events) + 1))
        assert [r["cursor"] for r in lines] == [str(c) for c in cursors[s]]
        assert not any("FORGED" in json.dumps(r) for r in records(files[s]))
        report = verify_file(files[s])
        assert report.ok, list(report.lines())
    quarantined = [
        json.loads(line) for line in (root / "_quarantine.jsonl").read_text().splitlines()
    ]
    assert {(q["cursor"], q["reason"].split(":")[0]) for q in quarantined} == {
        (str(forged_repeat), "repeated_seq"),
        (str(forged_ahead), "far_ahead"),
    }
    assert not (root / "_rejected.jsonl").exists()
    assert "Quarantined message" in arc.output()


async def test_resume_cursors_that_were_never_issued_are_rejected(
    gateway: GatewayProcess, http: httpx.AsyncClient, js: JetStreamContext, session_id: str
) -> None:
    other = unique_session("other")
    mine = await publish_events(js, build_events(session_id, simple_run(3)))
    theirs = await publish_events(js, build_events(other, simple_run(3)))
    beyond = (await js.stream_info(EVENTS_STREAM)).state.last_seq + 1000
    auth = {"Authorization": f"Bearer {token()}"}
    for cursor in (beyond, theirs[2]):
        response = await http.get(
            f"/v1/sessions/{session_id}/events", params={"from": str(cursor)}, headers=auth
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_cursor"
        response = await http.get(
            f"/v1/sessions/{session_id}/events",
            headers={**auth, "Last-Event-ID": str(cursor)},
        )
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_cursor"
    # The firehose resumes from any event its token may read, and from no other.
    scoped = {"Authorization": f"Bearer {token(sessions=session_id)}"}
    response = await http.get(
        "/v1/events", params={"sessions": session_id, "from": str(theirs[1])}, headers=scoped
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_cursor"
    async with websockets.connect(f"{gateway.ws_url}?token={token()}") as ws:
        for cursor in (beyond, theirs[0]):
            await ws.send(
                json.dumps({"op": "subscribe", "session": session_id, "from": str(cursor)})
            )
            frame = await ws_reply(ws)
            assert frame["op"] == "error" and frame["code"] == "invalid_cursor", frame
        await ws.send(json.dumps({"op": "ping"}))
        assert (await ws_reply(ws))["op"] == "pong"  # the socket stays open
    # A cursor this session's stream issued still resumes exactly.
    rest = await read_sse(
        http, f"/v1/sessions/{session_id}/events", len(mine) - 2, params={"from": str(mine[1])}
    )
    assert [e.id for e in rest] == [str(c) for c in mine[2:]]


@pytest.fixture(scope="module")
async def slow_model() -> AsyncIterator[ScriptedModel]:
    async with ScriptedModel(speed=0.15) as scripted:
        yield scripted


async def test_a_second_writer_stops_the_worker_s_run_loudly_with_writer_conflict(
    nc: Client,
    js: JetStreamContext,
    settings: Settings,
    slow_model: ScriptedModel,
    tmp_path: Path,
    session_id: str,
) -> None:
    """Another writer gets in mid-run (as a worker that took the session over would)."""
    async with running_worker(nc, worker_settings(settings, tmp_path, slow_model.url)):
        await submit(js, session_id, "[scenario:slow] a long answer please")
        following = asyncio.create_task(follow(js, session_id, timeout=60))
        for _ in range(300):  # until text streams, bounded
            head = await last_event(js, session_id)
            if head.type == "text.delta":
                break
            await asyncio.sleep(0.05)
        for _ in range(100):  # publish at the head; the worker may get there first
            head = await last_event(js, session_id)
            intruder = stamp(
                StatusData(status="another writer"),
                session=session_id,
                seq=head.seq + 1,
                run=head.run,
                max_msg_size=1 << 20,
            )
            try:
                await js.publish(
                    intruder.subject,
                    intruder.payload,
                    headers=expect_after(intruder.headers, session_id, head.stream_seq),
                )
                break
            except APIError as exc:
                assert exc.err_code == WRONG_LAST_SEQUENCE
        events = await asyncio.wait_for(following, 60)
        released = False
        for _ in range(100):  # the worker lets the session go at once, holding nothing
            try:
                await nc.request(ctl_subject(session_id), b'{"op":"status"}', timeout=2)
            except NoRespondersError:
                released = True
                break
            await asyncio.sleep(0.1)
        assert released, "the worker still answers for a session it lost"
        for _ in range(100):  # the CLI is stopped with the run
            if not processes_in(tmp_path / "workspaces" / session_id):
                break
            await asyncio.sleep(0.1)
        assert processes_in(tmp_path / "workspaces" / session_id) == []
    # A run stopped by a raising emit leaves the SDK's CLI subprocess transport
    # to the garbage collector; collect it while the loop still runs (else its
    # __del__ fails after the test session's loop closed).
    gc.collect()
    await asyncio.sleep(0)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))  # one event per seq
    assert events[-1].type == "run.failed" and events[-1].data["kind"] == "writer_conflict"
    assert [e.type for e in events].count("run.failed") == 1
    assert not {"run.completed", "run.cancelled"} & {e.type for e in events}
