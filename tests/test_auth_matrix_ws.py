"""The auth matrix over the WebSocket: every op x every kind of credential (tests/support/auth_matrix.py).

The first five kinds are refused at the handshake (401, the JSON error), the
wrong scope and a session outside the glob get an `error` frame `forbidden`,
the right token the op's own answer; no reply shows another session or the
token. A new op in agentcast/ws_ops.py fails `test_every_op_is_in_the_matrix`
until WS_OPS says what it needs.
"""

from __future__ import annotations

import json
import typing
from typing import Any, Final

import pytest
import websockets

from agentcast.ws_ops import ClientOp
from tests.support import auth_matrix
from tests.support.auth_matrix import (
    CREDENTIALS,
    MINE,
    UNAUTHENTICATED,
    Need,
    credential,
    leaked,
)
from tests.support.gateway import GatewayProcess, ws_reply

matrix_gateway = auth_matrix.matrix_gateway  # the module-scoped fixture

WS_OPS: Final[dict[str, Need | None]] = {
    "subscribe": Need("read"),
    "unsubscribe": Need("read"),
    "run": Need("run"),
    "cancel": Need("run"),
    "message": Need("run"),
    "ping": None,  # any valid token
}
_WS_FRAMES: Final[dict[str, dict[str, Any]]] = {
    "subscribe": {"op": "subscribe", "session": MINE},
    "unsubscribe": {"op": "unsubscribe", "session": MINE},
    "run": {"op": "run", "prompt": "hi", "session": MINE},
    "cancel": {"op": "cancel", "session": MINE},
    "message": {"op": "message", "session": MINE, "text": "and then?"},
    "ping": {"op": "ping"},
}
_WS_PASSED: Final = {
    "subscribe": ("subscribed", None), "unsubscribe": ("ack", None), "run": ("ack", None),
    "cancel": ("error", "not_running"), "message": ("ack", None), "ping": ("pong", None),
}  # fmt: skip


def test_every_op_is_in_the_matrix() -> None:
    ops = {cls.__struct_config__.tag for cls in typing.get_args(ClientOp)}
    assert ops == set(WS_OPS), f"WebSocket ops without a matrix entry: {sorted(ops - set(WS_OPS))}"


@pytest.mark.parametrize("kind", CREDENTIALS)
async def test_websocket_ops_pass_only_with_the_right_token(
    matrix_gateway: GatewayProcess, kind: str
) -> None:
    """One socket per credential (the handshake needs any valid token), every op on it."""
    wrong = []
    for op, need in WS_OPS.items():
        scope = need.scope if need is not None else "read"
        token = credential(kind, scope)
        url = matrix_gateway.ws_url + (f"?token={token}" if token else "")
        if kind in UNAUTHENTICATED:
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets.connect(url):
                    pass
            response = refused.value.response
            error = json.loads(response.body)["error"]
            if response.status_code != 401 or error["code"] != "unauthorized":
                wrong.append(f"{op}: handshake {response.status_code} {error}")
            if found := leaked(response.body.decode(), token):
                wrong.append(f"{op}: the refusal shows {found}")
            continue
        async with websockets.connect(url) as ws:
            if op == "unsubscribe":  # what there is to unsubscribe from, if the token may
                await ws.send(json.dumps(_WS_FRAMES["subscribe"]))
                await ws_reply(ws)
            await ws.send(json.dumps(_WS_FRAMES[op]))
            reply = await ws_reply(ws)
        passes = need is None or kind == "right"
        want_op, want_code = _WS_PASSED[op] if passes else ("error", "forbidden")
        if reply["op"] != want_op or reply.get("code") != want_code:
            wrong.append(f"{op}: {reply}, expected {want_op} {want_code or ''}")
        if found := leaked(json.dumps(reply), token):
            wrong.append(f"{op}: the reply shows {found}")
    assert not wrong, "\n".join(wrong)
