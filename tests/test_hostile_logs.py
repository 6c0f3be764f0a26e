"""Secrets never in logs: tokens redacted from every logged line (uvicorn's WebSocket lines
included), and log files created 0600."""

from __future__ import annotations

import asyncio
import logging
import stat
import sys
from pathlib import Path

import httpx
import pytest
import websockets

from agentcast.embedded import EmbeddedNats
from agentcast.logs import REDACTED, RedactSecrets, redact
from agentcast.supervisor import Supervisor
from tests.support.gateway import GatewayProcess, token
from tests.support.nats import role_env


async def test_tokens_in_urls_never_reach_the_gateway_log(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    gw = GatewayProcess(
        nats_server.url, tmp_path / "gw", None, "--log-level", "DEBUG",
        env=role_env(nats_server, "gateway"),
    )  # fmt: skip
    await asyncio.to_thread(gw.start)
    good, bad = token(), token(("read",), "nothing_*")[:-3] + "xyz"  # a valid one, a forged one
    try:
        async with websockets.connect(f"{gw.ws_url}?token={good}") as ws:
            await ws.send('{"op":"ping"}')
            await ws.recv()
        with pytest.raises(websockets.InvalidStatus):
            async with websockets.connect(f"{gw.ws_url}?token={bad}"):
                pass
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
            await http.get("/v1/sessions", params={"token": bad})
    finally:
        gw.stop()
    log = gw.log.read_text()
    assert "WebSocket /v1/ws?token=" + REDACTED in log  # uvicorn's own line, redacted
    for secret in (good, bad, good.split(".")[2], bad.split(".")[1]):
        assert secret not in log


def test_redaction_covers_bearer_headers_query_values_and_bare_jwts() -> None:
    jwt_like = "eyJhbGciOi.eyJzY29wZSI6.c2lnbmF0dXJl"
    assert redact(f"GET /x?a=1&token={jwt_like}&b=2") == f"GET /x?a=1&token={REDACTED}&b=2"
    assert redact(f"Authorization: Bearer {jwt_like}") == f"Authorization: Bearer {REDACTED}"
    assert redact(f"failed for {jwt_like}!") == f"failed for {REDACTED}!"
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "%s - %s", ("c", f"?token={jwt_like}"), None
    )
    RedactSecrets().filter(record)
    assert record.getMessage() == f"c - ?token={REDACTED}"


def test_role_logs_are_created_private(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "logs")
    child = sup.start("gateway", [sys.executable, "-c", "print('started')"])
    try:
        assert child.process is not None
        child.process.wait(30)
    finally:
        sup.stop(5)
    assert child.log_path is not None
    assert stat.S_IMODE(child.log_path.stat().st_mode) == 0o600
