"""Read formatted SSE streams as raw bytes, and run each ecosystem's validator over them."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter

NODE_DIR = Path(__file__).resolve().parent.parent / "node"


@dataclass(frozen=True)
class Message:
    """One SSE message as sent: its `id:` and its one `data:` line."""

    id: str | None
    data: str

    @property
    def json(self) -> Any:
        return json.loads(self.data)


def messages(body: bytes) -> list[Message]:
    """The data-carrying messages of an LF-framed SSE body (comments, retry lines skipped)."""
    out = []
    for block in body.decode().split("\n\n"):
        fields = [line.partition(": ") for line in block.split("\n") if line]
        ids = [v for k, _, v in fields if k == "id"]
        data = [v for k, _, v in fields if k == "data"]
        if data:
            assert len(data) == 1, block
            out.append(Message(ids[-1] if ids else None, data[0]))
    return out


async def read_raw(
    http: httpx.AsyncClient,
    path: str,
    *,
    until: Callable[[list[Message]], bool] | None = None,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 90.0,
) -> tuple[httpx.Response, bytes]:
    """The body of an SSE response up to the end of the message where `until` holds (or the
    end of the response), cut at a message boundary; then the client disconnects."""
    body = b""
    found: list[Message] = []
    parsed = 0  # bytes of `body` already split into messages
    async with asyncio.timeout(timeout):
        async with http.stream("GET", path, params=params, headers=headers) as response:
            if response.status_code != 200:
                await response.aread()
                return response, response.content
            async for chunk in response.aiter_bytes():
                body += chunk
                if until is None:
                    continue
                while (end := body.find(b"\n\n", parsed)) != -1:
                    new = messages(body[parsed : end + 2])
                    parsed = end + 2
                    found += new
                    if new and until(found):
                        return response, body[:parsed]
    return response, body


def node_check(script: str, tmp: Path, *bodies: bytes | tuple[bytes, ...]) -> list[dict[str, Any]]:
    """Run tests/node/<script> over the bodies (a tuple: parts of one resumed stream)."""
    if shutil.which("node") is None or not (NODE_DIR / "node_modules").is_dir():
        pytest.skip("node and tests/node/node_modules (npm ci --prefix tests/node) are needed")
    args = []
    for i, body in enumerate(bodies):
        parts = body if isinstance(body, tuple) else (body,)
        names = []
        for j, part in enumerate(parts):
            path = tmp / f"{script}-{i}-{j}.sse"
            path.write_bytes(part)
            names.append(str(path))
        args.append("+".join(names))
    done = subprocess.run(
        ["node", str(NODE_DIR / script), *args], capture_output=True, timeout=120, check=True
    )
    return [json.loads(line) for line in done.stdout.decode().splitlines()]


_PAYLOADS = frozenset({"value", "event", "rawEvent", "result", "metadata", "content"})


def _nulls(value: Any) -> bool:
    """A null in an AG-UI field (payloads such as CUSTOM.value carry the agent's own JSON)."""
    if value is None:
        return True
    if isinstance(value, dict):
        return any(k not in _PAYLOADS and _nulls(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_nulls(v) for v in value)
    return False


_AGUI_EVENT: TypeAdapter[Any] | None = None


def agui_python_check(body: bytes) -> list[str]:
    """Every message validated by ag-ui-protocol's own models; the event types, in order."""
    global _AGUI_EVENT
    if _AGUI_EVENT is None:
        from ag_ui.core import Event

        _AGUI_EVENT = TypeAdapter(Event)
    types = []
    for message in messages(body):
        assert message.id is not None and message.id.isdigit(), message
        _AGUI_EVENT.validate_json(message.data)
        event = message.json
        assert not _nulls(event), message.data  # AG-UI leaves unset fields out
        assert all("_" not in key for key in event), event  # camelCase on the wire
        assert 0 < event["timestamp"] < 2**53 and event["timestamp"] < 10**14  # ms, not ns
        types.append(event["type"])
    return types


async def drop_after(
    http: httpx.AsyncClient, path: str, params: dict[str, str], count: int
) -> tuple[bytes, str]:
    """A viewer that reads `count` messages and drops: what it got, and its Last-Event-ID."""
    from tests.support.gateway import auth

    _, body = await read_raw(http, path, params=params, headers=auth(),
                             until=lambda found: len(found) >= count)  # fmt: skip
    last = messages(body)[-1].id
    assert last is not None
    return body, last


async def cancel_once_streaming(
    nc: Any, http: httpx.AsyncClient, path: str, params: dict[str, str], text_type: str
) -> None:
    """Wait until the stream shows text (`text_type` in the format), then cancel the run."""
    from agentcast.codec import encode
    from agentcast.control import ControlRequest
    from agentcast.subjects import ctl_subject
    from tests.support.gateway import auth

    await read_raw(http, path, params=params, headers=auth(),
                   until=lambda found: found[-1].json.get("type") == text_type)  # fmt: skip
    session = path.split("/")[3]
    await nc.request(ctl_subject(session), encode(ControlRequest(op="cancel")), timeout=5)
