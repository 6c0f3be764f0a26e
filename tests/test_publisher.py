"""Publisher: seq without gaps, pipelined acks, dedupe, truncation, outages."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import msgspec
import pytest
from claude_agent_sdk import ToolResultBlock
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from agentcast.codec import decode_event
from agentcast.errors import DeliveryTimeout
from agentcast.events import Event, TextDeltaData, ToolResult, ToolResultData
from agentcast.settings import Settings
from agentcast.subjects import EVENTS_STREAM, session_events
from producer.acks import AckRouter
from producer.normalize import Normalizer
from producer.publisher import SessionPublisher
from tests.support.nats import PrivateNats


async def read_session(js: JetStreamContext, session: str) -> list[Event]:
    """Every stored event of a session, in stream order (an ephemeral pull consumer)."""
    info = await js.stream_info(EVENTS_STREAM, subjects_filter=session_events(session))
    stored = sum((info.state.subjects or {}).values())
    sub = await js.pull_subscribe(
        session_events(session),
        stream=EVENTS_STREAM,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    events: list[Event] = []
    try:
        while len(events) < stored:
            for msg in await sub.fetch(min(500, stored - len(events)), timeout=10):
                events.append(decode_event(msg.data))
                await msg.ack()
    finally:
        await sub.unsubscribe()
    return events


async def test_seq_runs_from_one_without_gaps(
    nc: Client, js: JetStreamContext, settings: Settings, session_id: str
) -> None:
    pub = SessionPublisher(
        await AckRouter(nc).start(), session_id, next_seq=1, max_msg_size=settings.max_msg_size
    )
    for i in range(1000):
        await pub.emit(TextDeltaData(index=0, text=f"t{i} "), run=1)
    await pub.close(timeout_s=30)
    events = await read_session(js, session_id)
    assert [e.seq for e in events] == list(range(1, 1001))
    assert "".join(e.data.text for e in events) == "".join(f"t{i} " for i in range(1000))
    assert len({e.id for e in events}) == 1000


async def test_five_megabyte_tool_result_is_truncated_under_the_limit(
    nc: Client, js: JetStreamContext, settings: Settings, session_id: str
) -> None:
    big = "line of build output\n" * (5 * 1024 * 1024 // 21)
    block = ToolResultBlock(tool_use_id="toolu_big", content=big, is_error=False)
    from claude_agent_sdk import UserMessage

    (draft,) = Normalizer().feed(UserMessage(content=[block]))
    pub = SessionPublisher(
        await AckRouter(nc).start(), session_id, next_seq=1, max_msg_size=settings.max_msg_size
    )
    sent = await pub.emit(draft.data, run=1)
    await pub.close(timeout_s=30)
    (stored,) = await read_session(js, session_id)
    assert isinstance(stored, ToolResult)
    assert stored.data.truncated is True and sent.data.truncated is True
    assert stored.data.tool_use_id == "toolu_big"
    assert big.startswith(stored.data.content.split("\n[... truncated")[0])
    info = await js.stream_info(EVENTS_STREAM)
    assert info.config.max_msg_size is not None
    assert len(msgspec.json.encode(stored)) < info.config.max_msg_size


async def test_list_content_tool_result_is_truncated_too(settings: Settings) -> None:
    from agentcast.events import make_event
    from producer.truncate import fit_event

    content = [{"type": "text", "text": "x" * (3 * 1024 * 1024)}, {"type": "text", "text": "tail"}]
    event = make_event(
        ToolResultData(tool_use_id="t", content=content), id="s.1", session="s", run=1, seq=1, ts=1
    )
    fitted, raw = fit_event(event, settings.max_msg_size)
    assert len(raw) < settings.max_msg_size and fitted.data.truncated
    assert fitted.data.content[1] == {"type": "text", "text": "tail"}


async def test_nats_killed_mid_run_loses_and_repeats_nothing(
    private_nats: PrivateNats, session_id: str
) -> None:
    server, nc = private_nats.server, private_nats.nc
    pub = SessionPublisher(
        await AckRouter(nc).start(), session_id, next_seq=1, max_msg_size=1 << 20, ack_timeout_s=1.0
    )
    for i in range(300):
        await pub.emit(TextDeltaData(index=0, text=str(i)), run=1)
    server.kill()
    for i in range(300, 600):
        await pub.emit(TextDeltaData(index=0, text=str(i)), run=1)
    await asyncio.sleep(1.0)
    await server.start_async()
    for i in range(600, 900):
        await pub.emit(TextDeltaData(index=0, text=str(i)), run=1)
    await pub.close(timeout_s=60)
    events = await read_session(nc.jetstream(), session_id)
    assert [e.seq for e in events] == list(range(1, 901))


async def test_events_that_cannot_be_delivered_fail_the_run_loudly(
    private_nats: PrivateNats, session_id: str
) -> None:
    pub = SessionPublisher(
        await AckRouter(private_nats.nc).start(),
        session_id,
        next_seq=1,
        max_msg_size=1 << 20,
        buffer=20,
        ack_timeout_s=0.5,
        delivery_timeout_s=2.0,
    )
    private_nats.server.kill()
    with pytest.raises(DeliveryTimeout) as caught:
        for i in range(100):
            await pub.emit(TextDeltaData(index=0, text=str(i)), run=1)
    assert caught.value.session == session_id
    assert pub.pending <= 20
    with pytest.raises(DeliveryTimeout):
        await pub.close(timeout_s=0.5)


async def test_events_the_server_lost_in_a_crash_are_sent_again_in_order(
    private_nats: PrivateNats, session_id: str
) -> None:
    """nats-server acks before its file store flushes: a kill -9 can drop acked events.

    The loss is made exact: after the kill, the stream's block file is cut
    just before the record of seq 46, as if the last flush never happened.
    """
    server, nc = private_nats.server, private_nats.nc
    js = nc.jetstream()
    pub = SessionPublisher(
        await AckRouter(nc).start(), session_id, next_seq=1, max_msg_size=1 << 20
    )
    for i in range(50):
        await pub.emit(TextDeltaData(index=0, text=str(i)), run=1)
    await pub.drain()
    await asyncio.sleep(0.3)  # let the server flush, so that the cut below is the only loss
    server.kill()
    _cut_block_before(server.store_dir, f"Nats-Msg-Id: {session_id}.46\r\n".encode(), session_id)
    await server.start_async()
    assert (await js.stream_info(EVENTS_STREAM)).state.messages == 45
    for i in range(50, 60):
        await pub.emit(TextDeltaData(index=0, text=str(i)), run=1)
    await pub.close(timeout_s=30)
    events = await read_session(js, session_id)
    assert [e.seq for e in events] == list(range(1, 61))


def _cut_block_before(store: Path, marker: bytes, session: str) -> None:
    """Truncate the stream's last block file at the start of the record holding `marker`."""
    blocks = sorted((store / "jetstream").glob("*/streams/AGENTCAST_EVENTS/msgs/*.blk"))
    data = blocks[-1].read_bytes()
    at = data.index(marker)
    # A record is: length (4), sequence (8), timestamp (8), subject length (2), subject, ...
    record = data.rindex(f"agentcast.evt.{session}.".encode(), 0, at) - 22
    os.truncate(blocks[-1], record)


async def test_the_plain_publish_path_stores_what_the_fast_one_does(
    nc: Client, js: JetStreamContext, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """producer/fastpub.py pre-encodes headers through nats-py's private parts; off, the public path."""
    from producer import fastpub

    stored: dict[bool, list[dict[str, str]]] = {}
    for fast in (True, False):
        monkeypatch.setattr(fastpub, "ENABLED", fast)
        session = f"t_path_{fast}_{os.getpid()}"
        pub = SessionPublisher(
            await AckRouter(nc).start(), session, next_seq=1, max_msg_size=settings.max_msg_size
        )
        for i in range(200):
            await pub.emit(TextDeltaData(index=0, text=f"t{i} "), run=1)
        await pub.close(timeout_s=30)
        assert [e.seq for e in await read_session(js, session)] == list(range(1, 201))
        headers = []
        at, previous = 1, 0
        for _ in range(2):
            msg = await js.get_msg(
                EVENTS_STREAM, seq=at, subject=session_events(session), next=True
            )
            got = dict(msg.headers or {})
            # The stream positions differ between the runs: the expected one must be the previous's.
            assert got.pop("Nats-Expected-Last-Subject-Sequence") == str(previous)
            headers.append({k: v.replace(session, "S") for k, v in got.items()})
            at = previous = msg.seq or 0
            at += 1
        stored[fast] = headers
    assert stored[True] == stored[False]
    assert stored[True][1] == {
        "Nats-Msg-Id": "S.2",
        "Nats-Expected-Last-Subject-Sequence-Subject": "agentcast.evt.S.>",
    }
