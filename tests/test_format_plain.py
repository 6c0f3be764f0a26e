"""The formats on the plain path (`AGENTCAST_GATEWAY_FASTPATH=0`: ASGI `send`, uvicorn frames
the chunks): a recorded run published to JetStream, read as AG-UI and AI SDK streams, whole,
joined mid-run and coalesced, equal to what the pure translators make of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from nats.js import JetStreamContext

from agentcast.codec import encode
from agentcast.embedded import EmbeddedNats
from agentcast.envelope import envelope
from agentcast.events import Event, type_of
from gateway.formats import AguiTranslator, AiSdkTranslator, FormatStream
from gateway.frames import Frame
from producer.synthetic import load_trace, trace_files
from tests.support.events import publish_events
from tests.support.formats import Message, messages, node_check, read_raw
from tests.support.gateway import GatewayProcess, auth
from tests.support.nats import role_env


@pytest.fixture(scope="module")
def gateway(
    nats_server: EmbeddedNats, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    proc = GatewayProcess(
        nats_server.url, tmp_path_factory.mktemp("gateway-formats-plain"),
        env={**role_env(nats_server, "gateway"), "AGENTCAST_GATEWAY_FASTPATH": "0"},
    )  # fmt: skip
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def recorded(session: str) -> list[Event]:
    trace = next(p for p in trace_files() if p.stem == "subagent")
    return [envelope(d.data, session=session, run=1, seq=i, parent_tool_use_id=d.parent_tool_use_id)
            for i, d in enumerate(load_trace(trace), 1)]  # fmt: skip


def _ended(found: list[Message]) -> bool:
    return '"RUN_FINISHED"' in found[-1].data


async def test_formats_on_the_plain_path(
    http: httpx.AsyncClient, js: JetStreamContext, tmp_path: Path, session_id: str
) -> None:
    events = recorded(session_id)
    cursors = await publish_events(js, events)
    frames = [Frame(e.seq, e.session, type_of(e), encode(e)) for e in events]
    path = f"/v1/sessions/{session_id}/events"
    _, agui = await read_raw(http, path, params={"format": "ag-ui"}, headers=auth(), until=_ended)
    at = str(cursors[len(cursors) // 2])
    _, joined = await read_raw(
        http, path, params={"format": "ag-ui"}, headers={**auth(), "Last-Event-ID": at},
        until=_ended,
    )  # fmt: skip
    _, aisdk = await read_raw(http, path, params={"format": "ai-sdk"}, headers=auth())
    _, merged = await read_raw(
        http, path, params={"format": "ag-ui", "coalesce_ms": "1000"}, headers=auth(),
        until=_ended,
    )  # fmt: skip
    for result in node_check("verify-agui.mjs", tmp_path, agui, joined, merged):
        assert result["ok"], result
    [result] = node_check("verify-aisdk.mjs", tmp_path, aisdk)
    assert result["ok"], result

    def pure(stream: FormatStream) -> list[str]:
        return [m.data for m in messages(b"".join(stream.feed(frames) + stream.caught_up()))]

    assert [m.data for m in messages(agui)] == pure(FormatStream(AguiTranslator(tracking=False)))
    assert [m.data for m in messages(aisdk)] == pure(FormatStream(AiSdkTranslator()))
    quiet = len(cursors) // 2 + 1  # the session's seq at the cursor
    assert [m.data for m in messages(joined)] == pure(
        FormatStream(AguiTranslator(tracking=True), quiet_until=quiet)
    )
    text = [m.json for m in messages(merged) if m.json["type"] == "TEXT_MESSAGE_CONTENT"]
    plain = [m.json for m in messages(agui) if m.json["type"] == "TEXT_MESSAGE_CONTENT"]
    assert "".join(e["delta"] for e in text) == "".join(e["delta"] for e in plain)
    assert len(text) < len(plain)
