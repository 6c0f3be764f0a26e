"""Generated input for the event codec: decoders never crash, events survive round trips.

agentcast/codec.py, agentcast/events.py, agentcast/envelope.py. Any bytes and
any JSON given to a decoder give a value or msgspec.DecodeError (ValidationError
is one), nothing else; every event type round-trips; an envelope of a type or
with fields this reader does not know survives `decode_loose`.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from agentcast import codec
from agentcast.envelope import envelope
from agentcast.events import EVENT_TYPES, AnyEvent, type_of
from tests.support.props import PROPS, QUICK, data_class, json_values, sample_data

DECODERS = {
    "event": codec.event_decoder, "loose": codec.loose_event_decoder, "json": codec.json_decoder,
    "control_request": codec.control_request_decoder, "control_reply": codec.control_reply_decoder,
    "stamp": codec.stamp_decoder, "ws_op": codec.ws_op_decoder, "ws_ref": codec.ws_ref_decoder,
}  # fmt: skip

ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
known_types = st.sampled_from(sorted(EVENT_TYPES))
unknown_types = st.from_regex(r"[a-z]{1,8}(\.[a-z_]{1,8}){0,2}", fullmatch=True).filter(
    lambda t: t not in EVENT_TYPES
)


def _decodes_or_refuses(decoder: Any, raw: bytes) -> None:
    try:
        decoder.decode(raw)
    except msgspec.DecodeError:
        pass


@pytest.mark.parametrize("name", sorted(DECODERS))
@QUICK
@given(raw=st.binary(max_size=256))
@example(raw=b'{"type":"text.delta","data":{"index":1e400}}')
@example(raw=b"\xff\xfe")
def test_any_bytes_decode_or_raise_decode_error(name: str, raw: bytes) -> None:
    _decodes_or_refuses(DECODERS[name], raw)


@pytest.mark.parametrize("name", sorted(DECODERS))
@QUICK
@given(value=json_values, event_type=known_types)
def test_any_json_decodes_or_raises_decode_error(name: str, value: Any, event_type: str) -> None:
    _decodes_or_refuses(DECODERS[name], codec.encode(value))
    # ...and any JSON as the data of a well-formed envelope of a known type
    wrapped = {"type": event_type, "id": "s.1", "session": "s", "run": 1, "seq": 1, "ts": 0}
    _decodes_or_refuses(DECODERS[name], codec.encode({**wrapped, "data": value}))


@st.composite
def events(draw: st.DrawFn) -> Any:
    event_type = draw(known_types)
    base = msgspec.to_builtins(sample_data(event_type))
    data = msgspec.convert(
        {**base, **draw(st.fixed_dictionaries({}, optional=_optional_fields(event_type)))},
        data_class(event_type),
    )
    return envelope(
        data,
        session=draw(ids),
        run=draw(st.integers(1, 2**31)),
        seq=draw(st.integers(1, 2**53)),
        ts=draw(st.integers(0, 2**63 - 1)),
        parent_tool_use_id=draw(st.none() | st.text(max_size=20)),
    )


def _optional_fields(event_type: str) -> dict[str, st.SearchStrategy[Any]]:
    """Strings for the string fields of `event_type`'s data (the ones any value fits)."""
    return {
        f.encode_name: st.text(max_size=40)
        for f in msgspec.structs.fields(data_class(event_type))
        if f.type in (str, str | None)
    }


@PROPS
@given(event=events())
def test_every_event_round_trips_exactly(event: Any) -> None:
    raw = codec.encode(event)
    assert codec.decode_event(raw) == event
    loose = codec.decode_loose(raw)
    assert loose.type == type_of(event) and codec.encode(loose.data) == codec.encode(event.data)


@PROPS
@given(
    event_type=unknown_types,
    data=json_values,
    extra=st.dictionaries(st.from_regex(r"x_[a-z]{1,6}", fullmatch=True), json_values, max_size=3),
)
def test_unknown_types_and_fields_survive_the_loose_decoder(
    event_type: str, data: Any, extra: dict[str, Any]
) -> None:
    wire = {"v": 1, "id": "s.1", "session": "s", "run": 1, "seq": 1, "ts": 5, "type": event_type}
    raw = codec.encode({**wire, **extra, "data": data})
    event = codec.decode_loose(raw)
    assert event == AnyEvent(**{**wire, "data": data})  # unknown envelope fields skipped
    assert codec.decode_loose(codec.encode(event)) == event
    with pytest.raises(msgspec.ValidationError):  # the strict decoder names what it refuses
        codec.decode_event(raw)


@PROPS
@given(
    event=events(),
    extra=st.dictionaries(st.from_regex(r"x_[a-z]{1,6}", fullmatch=True), json_values, max_size=3),
)
def test_an_old_reader_reads_a_newer_event_with_fields_it_does_not_know(
    event: Any, extra: dict[str, Any]
) -> None:
    wire = msgspec.to_builtins(event)
    newer = {**wire, **extra, "data": {**wire["data"], **extra}}
    assert codec.decode_event(codec.encode(newer)) == event
    assert codec.decode_loose(codec.encode(newer)).data == newer["data"]
