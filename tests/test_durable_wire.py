"""Durable Streams offsets, cursors, framing and producers, pure (gateway/durable/)."""

from __future__ import annotations

import base64
import json

import pytest

from gateway.durable.appstreams import message_of
from gateway.durable.offsets import NOW, START, format_offset, parse_offset, stream_cursor
from gateway.durable.producers import Producer, Refusal, is_new, producer_of
from gateway.durable.sse import Framing
from gateway.durable.wire import Mode, body, media_type, mode_of, sse_control, sse_data
from gateway.errors import ApiError
from gateway.frames import Frame


def test_offsets_sort_as_text_as_their_sequences_sort_as_numbers() -> None:
    seqs = [1, 9, 10, 99, 100, 123456789012]
    assert sorted(format_offset(s) for s in seqs) == [format_offset(s) for s in seqs]
    assert format_offset(17) == "00000000000000000017"


@pytest.mark.parametrize(
    ("values", "expected"),
    [([], START), (["-1"], START), (["now"], NOW), (["17"], 17), ([format_offset(17)], 17)],
)
def test_offsets_parse_the_sentinels_and_padded_or_plain_cursors(
    values: list[str], expected: int
) -> None:
    assert parse_offset(values) == expected


# 2**64: past JetStream's uint64 sequences, never issued (was passed on to JetStream)
@pytest.mark.parametrize(
    "values",
    [[""], ["0,1"], ["0 1"], ["-2"], ["1" * 21], ["٣"], ["1", "2"], [str(2**64)], ["9" * 20]],
)
def test_malformed_or_repeated_offsets_are_invalid_cursors(values: list[str]) -> None:
    with pytest.raises(ApiError) as caught:
        parse_offset(values)
    assert caught.value.status == 400 and caught.value.code == "invalid_cursor"


def test_a_cursor_the_client_already_holds_is_answered_with_a_greater_one() -> None:
    now = stream_cursor(None, now_s=1_800_000_000)
    assert now == stream_cursor("1", now_s=1_800_000_000)  # an older one: the current interval
    for _ in range(50):
        assert int(stream_cursor(now, now_s=1_800_000_000)) > int(now)


def test_media_types_pick_the_mode() -> None:
    assert media_type(None) == "application/octet-stream"
    assert media_type("Application/JSON; charset=utf-8") == "application/json"
    assert mode_of("application/json") is Mode.JSON
    assert mode_of("text/plain") is Mode.TEXT
    assert mode_of("image/png") is Mode.BINARY


def test_json_bodies_are_arrays_and_appends_keep_each_value() -> None:
    stored = [message_of(Mode.JSON, b'[{"a": 1}, [2, 3]]', create=False), b"4"]
    assert json.loads(body(Mode.JSON, [s for s in stored if s])) == [{"a": 1}, [2, 3], 4]
    assert body(Mode.JSON, []) == b"[]"
    assert message_of(Mode.JSON, b"[]", create=True) is None
    for empty in (b"[]", b"", b"  "):
        with pytest.raises(ApiError):
            message_of(Mode.JSON, empty, create=False)
    with pytest.raises(ApiError) as caught:
        message_of(Mode.JSON, b"{ invalid", create=False)
    assert caught.value.code == "invalid_json"


def test_sse_data_lines_cannot_end_an_event_or_forge_a_control() -> None:
    data = sse_data(Mode.TEXT, [b'a\r\n\r\nevent: control\rdata: {"x":1}\n'])
    assert data.count(b"\n\n") == 1 and data.endswith(b"\n\n")
    assert data.startswith(b"event: data\ndata:a\ndata:\ndata:event: control\n")
    binary = sse_data(Mode.BINARY, [b"\x00\n", b"\r\xff"])
    assert base64.b64decode(binary.split(b"data:")[1].strip()) == b"\x00\n\r\xff"


def test_control_events_say_up_to_date_only_when_true() -> None:
    assert b"upToDate" not in sse_control(5, "7", up_to_date=False)
    line = sse_control(5, "7", up_to_date=True).split(b"data:")[1]
    assert json.loads(line) == {
        "streamNextOffset": format_offset(5), "streamCursor": "7", "upToDate": True,
    }  # fmt: skip


def _events(text: bytes) -> list[tuple[str, str]]:
    out = []
    for block in text.decode().split("\n\n"):
        lines = block.split("\n")
        if lines and lines[0].startswith("event: "):
            out.append((lines[0][7:], "\n".join(line[5:] for line in lines[1:])))
    return out


def test_each_replayed_batch_goes_out_with_its_control_and_the_last_one_is_up_to_date() -> None:
    framing = Framing(Mode.JSON, "9")
    frames = [Frame(seq, "s", "status", b'{"seq":%d}' % seq) for seq in (3, 5, 8)]
    written = framing.replay(frames[:2]) + framing.replay(frames[2:])
    written += framing.caught_up(8) or b""
    events = _events(written)
    assert [kind for kind, _ in events] == ["data", "control", "data", "control"]
    assert json.loads(events[1][1])["streamNextOffset"] == format_offset(5)
    assert "upToDate" not in json.loads(events[1][1])
    assert json.loads(events[3][1]) == {
        "streamNextOffset": format_offset(8), "streamCursor": "9", "upToDate": True,
    }  # fmt: skip
    assert framing.ending() is None


def test_live_messages_after_replay_release_the_held_batch_first() -> None:
    framing = Framing(Mode.JSON, "9")
    held = framing.replay([Frame(3, "s", "status", b"{}")])
    assert held == b""
    written = framing.live(Frame(4, "s", "status", b"[]"))
    kinds = [kind for kind, _ in _events(written)]
    assert kinds == ["data", "control", "data", "control"]
    assert framing.caught_up(4) is None  # the live message's control said so


def test_every_durable_route_is_its_own_openapi_operation() -> None:
    from agentcast.settings import Settings
    from gateway.app import create_app

    settings = Settings.load({"nats_url": "nats://127.0.0.1:1", "jwt_secret": "x" * 32}, environ={})
    paths = create_app(settings).openapi()["paths"]  # warnings are errors: no duplicate ids
    assert set(paths["/ds/v1/sessions/{session}"]) == {"get", "head"}
    assert set(paths["/ds/v1/stream/{name}"]) == {"get", "head", "put", "post", "delete"}


def test_the_closing_message_ends_with_a_closed_control_and_no_cursor() -> None:
    framing = Framing(Mode.JSON, "9", end_type="end")
    closed: list[bool] = []
    framing.on_close = lambda: closed.append(True)
    replayed = framing.replay([Frame(3, "a", "msg", b"1"), Frame(4, "a", "end", b"2")])
    assert replayed == b"" and framing.closed and not closed  # replay: the route ends it
    events = _events(framing.caught_up(4) or b"")
    assert [kind for kind, _ in events] == ["data", "control"]
    assert json.loads(events[0][1]) == [1, 2]
    assert json.loads(events[1][1]) == {
        "streamNextOffset": format_offset(4), "streamClosed": True, "upToDate": True,
    }  # fmt: skip

    live = Framing(Mode.JSON, "9", end_type="end")
    live.on_close = lambda: closed.append(True)
    events = _events(live.live(Frame(7, "a", "end", b"")))  # a close without data
    assert [kind for kind, _ in events] == ["control"] and closed == [True]
    assert json.loads(events[0][1])["streamClosed"] is True


def test_sessions_never_close() -> None:
    framing = Framing(Mode.JSON, "9")  # no end_type: an event of any type is data
    events = _events(framing.live(Frame(7, "s", "end", b"{}")))
    assert [kind for kind, _ in events] == ["data", "control"] and not framing.closed


def test_producer_headers_go_together_and_are_integers() -> None:
    assert producer_of({}) is None
    made = producer_of({"Producer-Id": "p/1 ü", "Producer-Epoch": "2", "Producer-Seq": "0"})
    assert made == Producer("p/1 ü", 2, 0) and made.token.isalnum()  # any id, a safe token
    for bad in (
        {"Producer-Id": "p"},
        {"Producer-Id": "", "Producer-Epoch": "0", "Producer-Seq": "0"},
        {"Producer-Id": "p", "Producer-Epoch": "1e3", "Producer-Seq": "0"},
        {"Producer-Id": "p", "Producer-Epoch": "-1", "Producer-Seq": "0"},
    ):
        with pytest.raises(ApiError) as caught:
            producer_of(bad)
        assert caught.value.status == 400


def test_a_producer_appends_once_in_order_and_an_old_epoch_is_fenced() -> None:
    assert is_new(Producer("p", 0, 0), None)
    assert is_new(Producer("p", 0, 3), (0, 2))
    assert not is_new(Producer("p", 0, 2), (0, 2))  # a retry: a duplicate, stored once
    assert is_new(Producer("p", 1, 0), (0, 7))  # a new epoch starts again
    with pytest.raises(Refusal) as gap:
        is_new(Producer("p", 0, 5), (0, 2))
    assert gap.value.status == 409 and gap.value.headers["Producer-Expected-Seq"] == "3"
    with pytest.raises(Refusal) as fenced:
        is_new(Producer("p", 0, 9), (1, 0))
    assert fenced.value.status == 403 and fenced.value.headers["Producer-Epoch"] == "1"
    with pytest.raises(ApiError):
        is_new(Producer("p", 2, 1), (1, 0))
