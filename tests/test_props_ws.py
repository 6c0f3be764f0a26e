"""Generated WebSocket frames (agentcast/ws_ops.py, gateway/ws.py) against a live gateway.

Any frame (binary, text, JSON of any shape, the ops with fields of any type)
gets exactly one reply that is not an event: `error` with a code the client can
act on (never `internal`, an unhandled exception, nor `nats_unavailable` while
NATS is up: a cursor past uint64 got that from JetStream), or the op's own
answer; the frame's `id` is echoed when it has a usable one, and the socket
stays open (a ping after it gets its pong). The token reads only, so no frame
can queue a run on the shared server: run ops end at their checks or at 403.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
from hypothesis import example, given
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from agentcast import codec
from agentcast.events import EVENT_TYPES
from agentcast.ws_ops import ClientOp
from tests.support.gateway import GatewayProcess, token
from tests.support.props import PROPS, json_values

OPS = ["subscribe", "unsubscribe", "run", "cancel", "message", "ping"]
CODE = re.compile(r"[a-z][a-z_]*")
NOT_THE_CLIENTS = {"internal", "nats_unavailable", "unavailable"}
ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
fields = {
    "id": st.none() | st.integers(-(2**70), 2**70) | st.text(max_size=10) | json_values,
    "session": ids | st.text(max_size=70) | json_values,
    "from": st.sampled_from(["start", "now", "1", "0", "18446744073709551616"]) | json_values,
    "types": st.lists(st.sampled_from(sorted(EVENT_TYPES)) | st.text(max_size=10), max_size=3)
    | json_values,
    "prompt": st.text(max_size=20) | json_values,
    "text": st.text(max_size=20) | json_values,
    "options": json_values,
}
op_frames = st.builds(
    lambda op, rest: {"op": op, **rest},
    st.sampled_from(OPS) | st.text(max_size=10) | json_values,
    st.fixed_dictionaries({}, optional=fields),
)
frames = (
    op_frames.map(codec.encode)
    | json_values.map(codec.encode)
    | st.binary(max_size=64)
    | st.text(max_size=64).map(str.encode)
)


def _exchange(ws: ClientConnection, frame: bytes, as_text: bool) -> dict[str, Any]:
    ws.send(frame.decode() if as_text else frame)
    while True:
        reply: dict[str, Any] = json.loads(ws.recv(timeout=30))
        if reply["op"] != "event":
            return reply


def _ref(frame: bytes) -> Any:
    try:
        value = json.loads(frame)
    except ValueError:
        return None
    ref = value.get("id") if isinstance(value, dict) else None
    return ref if isinstance(ref, (str, int)) and not isinstance(ref, bool) else None


@PROPS
@given(frame=frames)
@example(frame=b'{"op":"subscribe","session":"s","from":"18446744073709551616"}')
@example(frame=b'{"op":"subscribe","session":"s","types":["a b"]}')
@example(frame=b'{"op":"run","prompt":"hi","options":{"model":{}}}')
@example(frame=b'{"op":"subscribe","session":""}')
@example(frame=b'{"op":"ping","id":1e400}')
@example(frame=b"\xff")
def test_every_frame_gets_one_actionable_reply_and_the_socket_stays_open(
    gateway: GatewayProcess, frame: bytes
) -> None:
    with connect(f"{gateway.ws_url}?token={token(('read',), sessions='*')}") as ws:
        try:
            as_text = frame.decode() is not None
        except UnicodeDecodeError:
            as_text = False
        reply = _exchange(ws, frame, as_text)
        if reply["op"] == "error":
            assert CODE.fullmatch(reply["code"]) and reply["code"] not in NOT_THE_CLIENTS, reply
            assert isinstance(reply["message"], str) and reply["message"], reply
        else:
            assert _decodes(frame), reply
            assert reply["op"] in ("pong", "subscribed", "ack"), reply
        if (ref := _ref(frame)) is not None and reply["op"] in ("error", "pong", "ack"):
            assert reply.get("id") == ref, reply
        assert _exchange(ws, b'{"op":"ping","id":"after"}', True) == {"op": "pong", "id": "after"}


def _decodes(frame: bytes) -> bool:
    try:
        msgspec.json.decode(frame, type=ClientOp)
    except msgspec.DecodeError:
        return False
    return True
