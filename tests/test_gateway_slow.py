"""A client that never reads: told `lagged` and dropped, while the others get everything in bounded memory."""

from __future__ import annotations

import asyncio
import re
import socket

import httpx
from nats.js import JetStreamContext

from agentcast.events import TextDeltaData
from tests.support.events import build_events, publish_events, unique_session
from tests.support.gateway import GATEWAY_ENV, GatewayProcess, envelopes, read_sse, token

READERS = 50
EVENTS = 300
HEAVY = 256 * 1024
HEAVY_EVENTS = 30
LIMIT = int(GATEWAY_ENV["AGENTCAST_CLIENT_BUFFER_BYTES"])


def _stalled_client(port: int, path: str) -> socket.socket:
    """A raw HTTP client with a tiny receive window that reads nothing."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token()}\r\n\r\n".encode()
    )
    return sock


def _read_all(sock: socket.socket) -> bytes:
    sock.settimeout(30)
    chunks = []
    while True:
        data = sock.recv(1 << 16)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


async def _wait_for(predicate: object, what: str, rounds: int = 400) -> None:
    for _ in range(rounds):
        if await asyncio.to_thread(predicate):  # type: ignore[arg-type]
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


async def test_a_stalled_client_is_dropped_as_lagged_and_never_holds_back_the_others(
    gateway: GatewayProcess, http: httpx.AsyncClient, js: JetStreamContext
) -> None:
    """50 readers follow session A; the stalled client follows A and a heavy session B
    (the firehose over both), so its backlog outgrows the kernel's socket buffers,
    which Linux autotunes to megabytes on loopback, within a few MB of events."""
    prefix = unique_session("slow")
    light, heavy = f"{prefix}_a", f"{prefix}_b"
    path = f"/v1/sessions/{light}/events"
    lights = build_events(
        light, [TextDeltaData(index=0, text=f"{i:05d}" + "x" * 1000) for i in range(EVENTS)]
    )
    heavies = build_events(
        heavy, [TextDeltaData(index=0, text="y" * HEAVY) for _ in range(HEAVY_EVENTS)]
    )
    lagged_before = gateway.metric("agentcast_gateway_lagged_disconnects_total", transport="sse")
    open_before = gateway.metric("agentcast_gateway_connections", transport="sse")
    rss_before = gateway.rss_kib()

    stalled = _stalled_client(gateway.port, f"/v1/events?sessions={prefix}_*&from=now")
    readers = [asyncio.create_task(read_sse(http, path, EVENTS)) for _ in range(READERS)]
    await _wait_for(
        lambda: (
            gateway.metric("agentcast_gateway_connections", transport="sse")
            >= open_before + READERS + 1
        ),
        "every client connected",
    )

    async def read_once_lagged() -> bytes:
        # The gateway flushes a lagged stream's notice for CLOSE_GRACE_S, then aborts it:
        # start reading as soon as the drop is counted, while events are still published.
        await _wait_for(
            lambda: (
                gateway.metric("agentcast_gateway_lagged_disconnects_total", transport="sse")
                > lagged_before
            ),
            "the stalled client dropped as lagged",
            rounds=1200,
        )
        return await asyncio.to_thread(_read_all, stalled)

    reading = asyncio.create_task(read_once_lagged())
    bound = (READERS + 1) * (2 * LIMIT + 16 * 1024) + 2 * HEAVY
    peak = 0
    cursors: list[int] = []
    per_round = EVENTS // HEAVY_EVENTS
    for i in range(HEAVY_EVENTS):
        cursors += await publish_events(js, lights[i * per_round : (i + 1) * per_round])
        cursors += await publish_events(js, heavies[i : i + 1])
        peak = max(
            peak, int(await asyncio.to_thread(gateway.metric, "agentcast_gateway_buffered_bytes"))
        )
        assert peak <= bound
    raw = await reading
    stalled.close()

    for got in await asyncio.gather(*readers):
        assert [e["seq"] for e in envelopes(got)] == list(range(1, EVENTS + 1))
    text = raw.decode(errors="replace")
    notice = re.search(r'event: lagged\r?\n(?:\r?\n)?[0-9a-f\r\n]*data: \{"cursor":"(\d+)"', text)
    assert notice, text[-300:]
    resume = int(notice.group(1))
    ids = [int(m) for m in re.findall(r"^id: (\d+)\r?$", text[: notice.start()], re.MULTILINE)]
    assert (
        ids and ids[-1] == resume
    )  # everything up to the cursor was sent, in order, then the notice
    assert ids == [c for c in cursors if c <= resume][-len(ids) :]
    assert len(ids) < len(cursors)

    after = [c for c in cursors if c > resume]
    rest = await read_sse(
        http, "/v1/events", len(after), params={"sessions": f"{prefix}_*"},
        headers={"Authorization": f"Bearer {token()}", "Last-Event-ID": str(resume)},
    )  # fmt: skip
    assert [int(e.id) for e in rest] == after
    print(
        f"\ngateway RSS {rss_before} KiB -> {gateway.rss_kib()} KiB; peak buffered {peak} B (bound {bound} B)"
    )
