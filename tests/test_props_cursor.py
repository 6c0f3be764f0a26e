"""Generated input for cursors (agentcast/cursor.py): a JetStream sequence, or InvalidCursor."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from agentcast.cursor import format_cursor, parse_cursor
from agentcast.errors import InvalidCursor
from tests.support.props import PROPS

MAX_SEQ = 2**64 - 1


@PROPS
@given(seq=st.integers(1, MAX_SEQ))
def test_every_stream_sequence_round_trips(seq: int) -> None:
    assert parse_cursor(format_cursor(seq)) == seq


@PROPS
@given(value=st.text(max_size=30) | st.integers(-(2**70), 2**70).map(str))
@example(value="18446744073709551616")  # past uint64: was a 503 from JetStream's direct get
@example(value="99999999999999999999")
@example(value="0")
@example(value="00000000000000000001")  # never issued: format_cursor writes no leading zero
@example(value="١٢")  # Arabic-Indic digits: str.isdigit() says yes
@example(value=" 1")
def test_any_text_is_a_sequence_in_range_or_invalid_cursor(value: str) -> None:
    try:
        seq = parse_cursor(value)
    except InvalidCursor as exc:
        assert exc.code == "invalid_cursor" and repr(value[:80]) in str(exc)
        return
    assert 1 <= seq <= MAX_SEQ and value == format_cursor(seq)


def test_the_largest_sequence_is_a_cursor_and_one_more_is_not() -> None:
    assert parse_cursor(str(MAX_SEQ)) == MAX_SEQ
    with pytest.raises(InvalidCursor):
        parse_cursor(str(MAX_SEQ + 1))
