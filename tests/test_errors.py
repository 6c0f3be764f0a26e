"""The error tree is drawn whole, and NATS being away is a 503 the client can retry, not a 400."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path

import httpx

import agentcast.errors
from agentcast.embedded import EmbeddedNats
from agentcast.errors import AgentcastError
from tests.support.gateway import GatewayProcess, auth
from tests.support.nats import role_env
from tests.support.proxy import Partition

# Every module that defines an AgentcastError subclass (the test below fails on one it misses).
_DEFINING = (
    "agentcast.tokens",
    "agentcast.client.errors",
    "agentcast.embedded",
    "agentcast.supervisor",
    "consumers.lease",
    "gateway.admission",
    "gateway.durable.appstreams",
    "gateway.durable.producers",
    "gateway.errors",
    "gateway.replay",
)


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


def test_the_error_tree_in_the_docstring_names_every_subclass() -> None:
    for module in _DEFINING:
        importlib.import_module(module)
    drawn = agentcast.errors.__doc__ or ""
    names = {cls.__name__ for cls in _subclasses(AgentcastError)}
    assert len(names) >= 14
    assert sorted(n for n in names if f"── {n} " not in drawn) == []


async def test_nats_unreachable_is_503_nats_unavailable_with_retry_after(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    partition = Partition("127.0.0.1", nats_server.port)
    await partition.start()
    gateway = GatewayProcess(partition.url, tmp_path / "gw", env=role_env(nats_server, "gateway"))
    try:
        await asyncio.to_thread(gateway.start)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
            partition.cut()  # the gateway's connection drops and reconnecting is refused
            while (await http.get("/readyz")).status_code == 200:
                await asyncio.sleep(0.05)
            answer = await http.get("/v1/sessions/t_unreachable", headers=auth())
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "nats_unavailable"
        assert int(answer.headers["retry-after"]) > 0
    finally:
        gateway.kill()
        await partition.stop()
