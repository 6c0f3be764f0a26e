"""Secrets never in logs: redaction of every record, and log files created 0600 (the gateway's
own log, with real clients, is checked in tests/test_hostile_server.py)."""

from __future__ import annotations

import logging
import stat
import sys
from pathlib import Path

from agentcast.logs import REDACTED, RedactSecrets, redact
from agentcast.supervisor import Supervisor


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
