"""Logs keep no secrets: tokens are redacted from every record, and log files are private.

Redaction runs on the root handlers (`redact_handlers`), so every logger that
propagates, uvicorn's access and WebSocket lines included ('"WebSocket
/v1/ws?token=..." [accepted]'), is covered. Log files are created 0600
(`open_private_log`): they name sessions and clients even when redacted.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import IO, Final

_SECRETS: Final = re.compile(
    r"(?P<keep>[?&](?:token|access_token|jwt)=|\bBearer\s+)[^\s&\"'<>]+"
    r"|(?P<jwt>\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+)",
    re.IGNORECASE,
)
REDACTED: Final = "[redacted]"


def redact(text: str) -> str:
    """`text` with bearer tokens, `?token=` values and anything shaped like a JWT replaced."""
    return _SECRETS.sub(lambda m: (m.group("keep") or "") + REDACTED, text)


class RedactSecrets(logging.Filter):
    """Rewrites a record whose message carries a secret (a handler filter: it sees every record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def redact_handlers(logger: logging.Logger | None = None) -> None:
    """Add RedactSecrets to the handlers of `logger` (the root logger by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())


def open_private_log(path: Path) -> IO[bytes]:
    """`path` opened for appending, created 0600 (and made 0600 if it was wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")
