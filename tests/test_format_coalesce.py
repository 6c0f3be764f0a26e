"""coalesce_ms=: consecutive text deltas of one block merged, never reordered or lost; the
merged event carries its last part's cursor, so resuming after it is exact."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from agentcast.codec import encode
from agentcast.envelope import envelope
from agentcast.events import MessageStartedData, TextDeltaData, ThinkingDeltaData, type_of
from agentcast.settings import Settings
from gateway.formats.coalesce import Coalescer
from gateway.formats.items import Item
from gateway.frames import Frame
from tests.support.formats import Message, messages, node_check, read_raw
from tests.support.gateway import auth
from tests.support.scripted import ScriptedModel
from tests.support.worker import follow, running_worker, submit, worker_settings

DELTAS = {"text.delta", "thinking.delta"}


def _frames(datas: list[Any], ts_ms: list[int]) -> list[Frame]:
    out = []
    for i, (data, ts) in enumerate(zip(datas, ts_ms, strict=True)):
        ev = envelope(data, session="s", run=1, seq=i + 1)
        ev = type(ev)(**{**{f: getattr(ev, f) for f in ev.__struct_fields__}, "ts": ts * 10**6})
        out.append(Frame(i + 1, "s", type_of(ev), encode(ev)))
    return out


def test_coalescer_merges_one_block_inside_the_window_only() -> None:
    frames = _frames(
        [TextDeltaData(index=0, text="a"), TextDeltaData(index=0, text="b"),
         TextDeltaData(index=0, text="c"), TextDeltaData(index=1, text="d"),
         ThinkingDeltaData(index=1, text="e"), MessageStartedData(message_id="m"),
         TextDeltaData(index=0, text="f"), TextDeltaData(index=0, text="g")],
        [0, 10, 60, 61, 62, 63, 64, 200],
    )  # fmt: skip
    coalescer = Coalescer(50)
    out: list[Item] = []
    for frame in frames:
        out += coalescer.push(Item(frame))
    out += coalescer.drain()
    got = [(i.cursor, i.frame.type, i.data.get("text"), i.merged) for i in out]
    assert got == [
        ("2", "text.delta", "ab", 2),  # "c" is 60 ms after "a": a new group
        ("3", "text.delta", "c", 1),
        ("4", "text.delta", "d", 1),  # another block
        ("5", "thinking.delta", "e", 1),
        ("6", "message.started", None, 1),
        ("7", "text.delta", "f", 1),
        ("8", "text.delta", "g", 1),
    ]
    assert out[0].event.seq == 2 and b'"text":"ab"' in out[0].payload()


@pytest.fixture(scope="module")
async def model() -> AsyncIterator[ScriptedModel]:
    async with ScriptedModel(speed=0.05) as scripted:
        yield scripted


def _split(found: list[Message]) -> tuple[str, list[Message]]:
    """The text of every delta, and every other message as sent."""
    text = "".join(m.json["data"]["text"] for m in found if m.json["type"] in DELTAS)
    return text, [m for m in found if m.json["type"] not in DELTAS]


def _ended(found: list[Message]) -> bool:
    return found[-1].json.get("type") in ("run.completed", "RUN_FINISHED")


async def test_coalesced_streams_keep_every_character_in_order_and_resume_exactly(
    nc: Client, js: JetStreamContext, settings: Settings, model: ScriptedModel,
    http: httpx.AsyncClient, tmp_path: Path, session_id: str,
) -> None:  # fmt: skip
    path = f"/v1/sessions/{session_id}/events"
    window = {"coalesce_ms": "40"}
    async with running_worker(nc, worker_settings(settings, tmp_path, model.url)):
        await submit(js, session_id, "[scenario:slow] a long answer please")
        _, live = await read_raw(http, path, params=window, headers=auth(), until=_ended)
        await follow(js, session_id)
    _, plain = await read_raw(http, path, headers=auth(), until=_ended)
    _, replayed = await read_raw(http, path, params=window, headers=auth(), until=_ended)
    everything = messages(plain)
    text, others = _split(everything)
    for got in (messages(live), messages(replayed)):
        assert _split(got) == (text, others)
        assert len(got) < len(everything)  # something was merged
        # Each merged delta is the deltas up to its cursor since the previous message.
        ids = [m.id for m in everything]
        previous = 0
        for m in got:
            at = ids.index(m.id)
            parts = everything[previous : at + 1]
            if m.json["type"] in DELTAS:
                assert m.json["data"]["text"] == "".join(p.json["data"]["text"] for p in parts)
                assert m.json["seq"] == parts[-1].json["seq"]
            else:
                assert parts == [m]
            previous = at + 1

    # Resume after a merged event: exactly the rest.
    merged = [m for m in messages(replayed) if m.json["type"] in DELTAS
              and m.json["data"]["text"] != everything[ids.index(m.id)].json["data"]["text"]]  # fmt: skip
    cursor = merged[len(merged) // 2].id
    assert cursor is not None
    _, rest = await read_raw(
        http, path, params=window, headers={**auth(), "Last-Event-ID": cursor}, until=_ended
    )
    after = everything[ids.index(cursor) + 1 :]
    assert _split(messages(rest)) == _split(after)

    # Other formats coalesce the same way, and stay valid.
    _, agui = await read_raw(
        http, path, params={**window, "format": "ag-ui"}, headers=auth(), until=_ended
    )
    [result] = node_check("verify-agui.mjs", tmp_path, agui)
    assert result["ok"], result
    deltas = [m.json["delta"] for m in messages(agui) if m.json["type"] == "TEXT_MESSAGE_CONTENT"]
    plain_text = "".join(m.json["data"]["text"] for m in everything
                         if m.json["type"] == "text.delta")  # fmt: skip
    assert "".join(deltas) == plain_text
    assert len(deltas) < sum(m.json["type"] == "text.delta" for m in everything)
    _, aisdk = await read_raw(http, path, params={**window, "format": "ai-sdk"}, headers=auth())
    [result] = node_check("verify-aisdk.mjs", tmp_path, aisdk)
    assert result["ok"] and result["text"] == plain_text, result
