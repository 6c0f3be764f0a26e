"""Replay storms in tests: a published session, raw SSE replays that keep comments and `retry:`.

httpx-sse drops comments and retry lines; a storm test must see them (the
queued notice, the retry hint), so `replay` parses the stream itself.
"""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass, field

import httpx
from nats.js import JetStreamContext

from agentcast.events import TextDeltaData
from tests.support.events import build_events, publish_events


async def publish_session(js: JetStreamContext, session: str, count: int, size: int = 100) -> None:
    datas = [TextDeltaData(index=0, text=f"{i:06d}" + "x" * size) for i in range(count)]
    await publish_events(js, build_events(session, datas))


@dataclass
class Replay:
    """What one SSE client saw: event seqs in order, comments, retry hints; ended by the server?"""

    seqs: list[int] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retries: list[int] = field(default_factory=list)
    last_id: str | None = None
    ended: bool = False


async def replay(
    client: httpx.AsyncClient,
    session: str,
    until_seq: int,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 120.0,
    seen: Replay | None = None,
) -> Replay:
    """Read `session`'s SSE stream from the start (or from `seen.last_id`, as a reconnecting
    EventSource does, adding to `seen`) until seq `until_seq` or the server ends it."""
    seen = seen or Replay()
    seen.ended = False
    if seen.last_id is not None:
        headers = {**(headers or {}), "Last-Event-ID": seen.last_id}
    async with asyncio.timeout(timeout):
        async with client.stream(
            "GET", f"/v1/sessions/{session}/events", params={"from": "start"}, headers=headers
        ) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line.startswith(": "):
                    seen.comments.append(line[2:])
                elif line.startswith("retry: "):
                    seen.retries.append(int(line[7:]))
                elif line.startswith("id: "):
                    seen.last_id = line[4:]
                elif line.startswith("data: "):
                    seen.seqs.append(json.loads(line[6:])["seq"])
                    if seen.seqs[-1] >= until_seq:
                        return seen
            seen.ended = True
    return seen


def stalled_reader(port: int, path: str, token: str) -> socket.socket:
    """An SSE client that sends its request and never reads (a tiny receive buffer), so its
    replay cannot finish: it holds a replay slot until the socket is closed."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path}?from=start&token={token} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock
