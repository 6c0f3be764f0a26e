"""A real run (the Claude CLI against the scripted model) read as a Durable Stream: catch-up,
long-poll and SSE agree with JetStream, resume from a mid-run offset is exact, and an offset
older than retention is 410 `cursor_expired`, as the agentcast cursor is."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from nats.aio.client import Client
from nats.js import JetStreamContext

from agentcast.embedded import EmbeddedNats
from agentcast.events import TERMINAL_TYPES
from agentcast.settings import Settings
from agentcast.subjects import EVENTS_STREAM, session_events
from tests.support.gateway import GatewayProcess, auth, read_sse, token
from tests.support.nats import role_env
from tests.support.scripted import ScriptedModel
from tests.support.worker import follow, running_worker, submit, worker_settings

Envelope = dict[str, Any]
NODE_DIR = Path(__file__).parent / "node"
DEADLINE_S = 90.0
"""A hang guard for each reader, not a target."""


@pytest.fixture(scope="module")
def ds_gateway(
    nats_server: EmbeddedNats, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    env = {**role_env(nats_server, "gateway"), "AGENTCAST_DURABLE_LONG_POLL_S": "2"}
    proc = GatewayProcess(nats_server.url, tmp_path_factory.mktemp("ds-gw"), env=env)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
async def model() -> AsyncIterator[ScriptedModel]:
    async with ScriptedModel(speed=0) as scripted:
        yield scripted


def _done(envelopes: list[Envelope]) -> bool:
    return any(e["type"] in TERMINAL_TYPES for e in envelopes)


async def sse_pairs(
    http: httpx.AsyncClient, path: str, offset: str
) -> list[tuple[list[Envelope], str]]:
    """(envelopes of a data event, the offset of its control event) until the run ends."""
    pairs: list[tuple[list[Envelope], str]] = []
    data: list[Envelope] | None = None
    async with asyncio.timeout(DEADLINE_S):
        params = {"offset": offset, "live": "sse"}
        async with aconnect_sse(http, "GET", path, params=params) as source:
            assert source.response.headers["content-type"] == "text/event-stream"
            async for sse in source.aiter_sse():
                if sse.event == "data":
                    assert data is None, "a data event without its control event"
                    data = json.loads(sse.data)
                elif sse.event == "control":
                    control = json.loads(sse.data)
                    if data is not None:
                        pairs.append((data, control["streamNextOffset"]))
                        data = None
                    if _done([e for envs, _ in pairs for e in envs]) and control.get("upToDate"):
                        return pairs
    raise AssertionError("unreachable")


async def long_poll(http: httpx.AsyncClient, path: str, offset: str) -> tuple[list[Envelope], str]:
    """Every envelope after `offset` until the run ends, and the offset after them."""
    got: list[Envelope] = []
    async with asyncio.timeout(DEADLINE_S):
        while not _done(got):
            reply = await http.get(path, params={"offset": offset, "live": "long-poll"})
            assert reply.status_code in (200, 204), reply.text
            assert reply.headers["Stream-Cursor"].isdigit()
            if reply.status_code == 200:
                got += reply.json()
            offset = reply.headers["Stream-Next-Offset"]
    return got, offset


async def catch_up(http: httpx.AsyncClient, path: str, offset: str) -> tuple[list[Envelope], str]:
    """Catch-up reads from `offset` until one says it reached the tail."""
    got: list[Envelope] = []
    while True:
        reply = await http.get(path, params={"offset": offset})
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"] == "application/json"
        assert reply.headers["ETag"]
        got += reply.json()
        offset = reply.headers["Stream-Next-Offset"]
        if reply.headers.get("Stream-Up-To-Date") == "true":
            return got, offset


async def official_client(
    gateway: GatewayProcess, session: str, offset: str, mode: str
) -> tuple[list[int], str]:
    """tests/node/durable-client.mjs: the seqs it read from `offset`, and its last offset."""
    proc = await asyncio.create_subprocess_exec(
        "node", "durable-client.mjs", gateway.url, session, token(), offset, mode,
        cwd=NODE_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(DEADLINE_S):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    found = json.loads(out)
    return found["seqs"], found["offset"]


async def test_a_real_run_reads_the_same_by_catch_up_long_poll_and_sse_and_resumes_exactly(
    ds_gateway: GatewayProcess,
    nc: Client,
    js: JetStreamContext,
    settings: Settings,
    model: ScriptedModel,
    tmp_path: Path,
    session_id: str,
) -> None:
    path = f"/ds/v1/sessions/{session_id}"
    async with httpx.AsyncClient(base_url=ds_gateway.url, headers=auth(), timeout=60) as http:
        # Readers start before the run: they get its events live.
        sse_task = asyncio.create_task(sse_pairs(http, path, "-1"))
        poll_task = asyncio.create_task(long_poll(http, path, "now"))
        async with running_worker(nc, worker_settings(settings, tmp_path, model.url)):
            await submit(js, session_id, "[scenario:bash] say hello from the shell")
            truth = [e.seq for e in await follow(js, session_id)]
            pairs = await sse_task
            polled, polled_end = await poll_task
        assert truth == list(range(1, len(truth) + 1)) and len(truth) > 10

        caught, tail = await catch_up(http, path, "-1")
        sse_envelopes = [e for envs, _ in pairs for e in envs]
        assert [e["seq"] for e in caught] == truth
        assert [e["seq"] for e in sse_envelopes] == truth
        assert [e["seq"] for e in polled] == truth
        assert caught == sse_envelopes == polled

        # Offsets: strictly increasing as text, ending at the tail every reader agrees on.
        offsets = [offset for _, offset in pairs]
        assert offsets == sorted(set(offsets))
        head = await http.head(path)
        assert head.status_code == 200 and head.headers["Cache-Control"] == "no-store"
        assert head.headers["Stream-Next-Offset"] == tail == offsets[-1] == polled_end

        # An offset is the agentcast cursor of the last event read, zero-padded.
        cursors = [
            e.id for e in await read_sse(http, f"/v1/sessions/{session_id}/events", len(truth))
        ]
        assert tail == cursors[-1].zfill(20)
        k = len(truth) // 2
        mid = cursors[k - 1]  # after event k
        rest = truth[k:]
        for offset in (mid, mid.zfill(20)):
            assert [e["seq"] for e in (await catch_up(http, path, offset))[0]] == rest
        assert [e["seq"] for e in (await long_poll(http, path, mid))[0]] == rest
        resumed = await sse_pairs(http, path, mid.zfill(20))
        assert [e["seq"] for envs, _ in resumed for e in envs] == rest

        # The official client (the README's snippet) reads the same, and resumes the same.
        for mode in ("sse", "long-poll"):
            assert await official_client(ds_gateway, session_id, "-1", mode) == (truth, tail)
            assert await official_client(ds_gateway, session_id, mid, mode) == (rest, tail)

        # Retention: the events before event k+2 are gone (as max_age would remove them).
        kept_from = int(cursors[k + 1])
        await js.purge_stream(EVENTS_STREAM, subject=session_events(session_id), seq=kept_from)
        for params in ({}, {"live": "long-poll"}, {"live": "sse"}):
            gone = await http.get(path, params={"offset": mid.zfill(20), **params})
            assert gone.status_code == 410, gone.text
            error = gone.json()["error"]
            assert error["code"] == "cursor_expired" and error["earliest"] == str(kept_from)
        agentcast = await http.get(f"/v1/sessions/{session_id}/events", params={"from": mid})
        assert (
            agentcast.status_code == 410 and agentcast.json()["error"]["code"] == "cursor_expired"
        )
        after_kept = await catch_up(http, path, str(kept_from))
        assert [e["seq"] for e in after_kept[0]] == truth[k + 2 :]
        start = await catch_up(http, path, "-1")
        assert [e["seq"] for e in start[0]] == truth[k + 1 :]


async def test_durable_reads_need_a_token_that_covers_the_session_and_writes_need_run(
    ds_gateway: GatewayProcess, session_id: str
) -> None:
    async with httpx.AsyncClient(base_url=ds_gateway.url, timeout=30) as http:
        path = f"/ds/v1/sessions/{session_id}"
        assert (await http.get(path)).status_code == 401
        assert (await http.get(path, headers=auth(sessions="other-*"))).status_code == 403
        assert (await http.get(path, headers=auth())).json() == []  # exists, empty

        app = f"/ds/v1/stream/{session_id}"
        json_type = {"content-type": "application/json"}
        assert (await http.put(app, headers={**auth(), **json_type})).status_code == 403
        assert (await http.get(app, headers=auth())).status_code == 404
        made = await http.put(app, content=b'[{"n":1}]', headers={**auth(("run",)), **json_type})
        assert made.status_code == 201, made.text
        appended = await http.post(
            app, content=b'{"n":2}', headers={**auth(("admin",)), **json_type}
        )
        assert appended.status_code == 204
        assert (await http.get(app, headers=auth())).json() == [{"n": 1}, {"n": 2}]
        # An app stream of the same name is not the session: namespaced apart.
        assert (await http.get(path, headers=auth())).json() == []
        assert (await http.delete(app, headers=auth())).status_code == 403
        assert (await http.delete(app, headers=auth(("run",)))).status_code == 204
        assert (await http.get(app, headers=auth())).status_code == 404


async def test_waiting_long_polls_and_sse_readers_are_answered_at_shutdown(
    nats_server: EmbeddedNats, tmp_path: Path, session_id: str
) -> None:
    """A gateway that stops ends its Durable Streams readers at once (204, end of stream),
    not after their long-poll or SSE lifetime: a deploy is not held up by them."""
    env = {
        **role_env(nats_server, "gateway"),
        "AGENTCAST_DURABLE_LONG_POLL_S": "600",
        "AGENTCAST_DURABLE_SSE_MAX_S": "600",
    }
    gateway = GatewayProcess(nats_server.url, tmp_path / "gw", env=env)
    await asyncio.to_thread(gateway.start)
    try:
        path = f"/ds/v1/sessions/{session_id}"
        async with httpx.AsyncClient(base_url=gateway.url, headers=auth(), timeout=60) as http:
            poll = asyncio.create_task(
                http.get(path, params={"offset": "now", "live": "long-poll"})
            )
            async with aconnect_sse(
                http, "GET", path, params={"offset": "-1", "live": "sse"}
            ) as sse:
                events = sse.aiter_sse()
                first = await anext(events)  # caught up: the reader is live
                assert first.event == "control" and json.loads(first.data)["upToDate"]
                gateway.terminate()
                rest = [e async for e in events]
            assert all(e.event == "control" for e in rest)
            answered = await poll
        assert answered.status_code == 204
        assert answered.headers["Stream-Next-Offset"] == "0" * 20
        assert gateway.proc is not None
        # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
        assert await asyncio.to_thread(gateway.proc.wait, DEADLINE_S) in (0, -signal.SIGTERM)
    finally:
        gateway.kill()
