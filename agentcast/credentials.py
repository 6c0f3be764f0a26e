"""The NATS users' passwords of a data directory: generated at first use, kept 0600, reused."""

from __future__ import annotations

import json
import os
import secrets
import string
from pathlib import Path
from typing import Final

from agentcast.bus_auth import ROLES

CREDENTIALS_FILE: Final = "credentials.json"
_PASSWORD_ALPHABET: Final = string.ascii_letters + string.digits


def new_password() -> str:
    """32 letters and digits, starting with a letter: safe in URLs and as a config value."""
    first = secrets.choice(string.ascii_letters)
    return first + "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(31))


def load_or_create_credentials(path: Path) -> dict[str, str]:
    """Every role's password, generated at first use into `path` (mode 0600) and reused."""
    found: dict[str, str] = {}
    if path.exists():
        raw = json.loads(path.read_text())
        found = {k: v for k, v in raw.items() if k in ROLES and isinstance(v, str) and v}
    if all(role in found for role in ROLES):
        return found
    for role in ROLES:
        found.setdefault(role, new_password())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(found, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)
    return found
