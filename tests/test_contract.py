"""The pure contract: envelope, schema evolution, subjects, session ids, cursors, settings."""

from __future__ import annotations

import msgspec
import pytest

from agentcast.codec import decode_event, decode_loose, encode
from agentcast.cursor import format_cursor, parse_cursor
from agentcast.errors import InvalidCursor, InvalidSessionId, InvalidSubject
from agentcast.events import (
    EVENT_CLASSES,
    SdkOtherData,
    TextDelta,
    TextDeltaData,
    ToolCalled,
    ToolCalledData,
    make_event,
)
from agentcast.sessions import new_session_id, validate_session_id
from agentcast.settings import Settings
from agentcast.subjects import (
    event_subject,
    parse_event_subject,
    session_events,
    session_type_filter,
)


def _envelope(data: object, **kw: object) -> object:
    base = {"id": "e1", "session": "s_1", "run": 1, "seq": 3, "ts": 17}
    base.update(kw)
    return make_event(data, **base)  # type: ignore[arg-type]


def test_envelope_wire_shape_matches_the_spec() -> None:
    event = _envelope(TextDeltaData(index=0, text="Hel"))
    wire = msgspec.json.decode(encode(event))
    assert wire == {
        "v": 1,
        "id": "e1",
        "session": "s_1",
        "run": 1,
        "seq": 3,
        "ts": 17,
        "type": "text.delta",
        "parent_tool_use_id": None,
        "data": {"index": 0, "text": "Hel"},
    }


def test_decoding_yields_the_tagged_class_for_match() -> None:
    raw = encode(_envelope(ToolCalledData(tool_use_id="t1", name="Bash", input={"command": "ls"})))
    match decode_event(raw):
        case ToolCalled(data=ToolCalledData(name=name, input=tool_input)):
            assert (name, tool_input) == ("Bash", {"command": "ls"})
        case other:
            pytest.fail(f"decoded as {other!r}")


def test_every_type_has_its_tag_and_a_subject_that_parses_back() -> None:
    assert len(EVENT_CLASSES) == 22
    for type_name, cls in EVENT_CLASSES.items():
        assert cls.__struct_config__.tag == type_name
        session, parsed_type = parse_event_subject(event_subject("s_1", type_name))
        assert (session, parsed_type) == ("s_1", type_name)


def test_sdk_other_keeps_the_class_field_name() -> None:
    wire = msgspec.json.decode(encode(_envelope(SdkOtherData(class_="NewThing", raw={"a": 1}))))
    assert wire["data"] == {"class": "NewThing", "raw": {"a": 1}, "truncated": False}


def test_old_reader_skips_unknown_fields_and_keeps_unknown_types() -> None:
    newer = {
        "v": 1,
        "id": "e1",
        "session": "s",
        "run": 1,
        "seq": 1,
        "ts": 1,
        "type": "text.delta",
        "parent_tool_use_id": None,
        "future_field": [1, 2],
        "data": {"index": 0, "text": "x", "future_data_field": True},
    }
    event = decode_event(msgspec.json.encode(newer))
    assert isinstance(event, TextDelta) and event.data.text == "x"
    unknown = dict(newer, type="hologram.projected", data={"beam": 1})
    with pytest.raises(msgspec.ValidationError):
        decode_event(msgspec.json.encode(unknown))
    loose = decode_loose(msgspec.json.encode(unknown))
    assert (loose.type, loose.data, loose.seq) == ("hologram.projected", {"beam": 1}, 1)


@pytest.mark.parametrize("bad", ["", "a.b", ">", "*", "a b", "x" * 65, "ü", "a\nb", None, 7])
def test_invalid_session_ids_are_refused_before_any_subject(bad: object) -> None:
    with pytest.raises(InvalidSessionId):
        validate_session_id(bad)
    with pytest.raises(InvalidSessionId):
        event_subject(bad, "status")  # type: ignore[arg-type]


def test_generated_session_ids_are_valid_and_distinct() -> None:
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(validate_session_id(i) == i for i in ids)


def test_type_patterns_map_to_nats_filters() -> None:
    assert session_type_filter("s_1", "tool.*") == "agentcast.evt.s_1.tool.>"
    assert session_type_filter("s_1", "text.delta") == "agentcast.evt.s_1.text.delta"
    assert session_type_filter("*", "run.*") == "agentcast.evt.*.run.>"
    assert session_events("s_1") == "agentcast.evt.s_1.>"


@pytest.mark.parametrize(
    "subject", ["agentcast.evt.s_1", "agentcast.ctl.s_1", "agentcast.evt.a*b.x"]
)
def test_foreign_subjects_do_not_parse(subject: str) -> None:
    with pytest.raises(InvalidSubject):
        parse_event_subject(subject)


@pytest.mark.parametrize("bad", ["", "0", "-1", "abc", "1.5", "9" * 40, "١٢"])
def test_cursors_parse_strictly(bad: str) -> None:
    assert parse_cursor(format_cursor(42)) == 42
    with pytest.raises(InvalidCursor):
        parse_cursor(bad)


def test_settings_layer_flags_over_environment_over_defaults() -> None:
    env = {
        "AGENTCAST_PORT": "9001",
        "AGENTCAST_ALLOWED_TOOLS": "Read, Bash",
        "AGENTCAST_CONCURRENCY": "3",
    }
    settings = Settings.load({"concurrency": 8, "nats_url": None}, environ=env)
    assert (settings.port, settings.allowed_tools, settings.concurrency) == (
        9001,
        ["Read", "Bash"],
        8,
    )
    with pytest.raises(ValueError, match="port"):
        Settings.load(environ={"AGENTCAST_PORT": "eighty"})


def test_the_type_tables_and_the_data_union_agree_with_the_event_union() -> None:
    import typing

    from agentcast.events import TYPE_OF_DATA, Event, EventData

    assert len(typing.get_args(Event)) == len(EVENT_CLASSES) == len(TYPE_OF_DATA) == 22
    assert set(typing.get_args(EventData)) == set(TYPE_OF_DATA)
    assert sorted(TYPE_OF_DATA.values()) == sorted(EVENT_CLASSES)
