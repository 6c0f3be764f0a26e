"""Session ids: validation and generation (SPEC "Sessions, runs, ids")."""

from __future__ import annotations

import re
import secrets
from typing import Final

from agentcast.errors import InvalidSessionId

SESSION_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ALPHABET: Final = "0123456789abcdefghijkmnpqrstuvwxyz"
_RANDOM: Final = 10
_MIN_RANDOM: Final = 4


def is_valid_session_id(value: object) -> bool:
    return isinstance(value, str) and SESSION_ID_PATTERN.fullmatch(value) is not None


def validate_session_id(value: object) -> str:
    """Return `value` if it is a valid session id, else raise InvalidSessionId.

    This is the gate in front of every subject built from a session id: NATS
    tokens must never carry `.`, `*`, `>` or whitespace from a client.
    """
    if not is_valid_session_id(value):
        raise InvalidSessionId(value)
    assert isinstance(value, str)
    return value


def new_session_id(prefix: str = "s_") -> str:
    """A fresh server-generated session id, e.g. `s_7k2m9qx4ab`: `prefix` and 10 random
    characters (fewer, at least 4, when the prefix is long; the prefix cut to fit 64)."""
    size = max(_MIN_RANDOM, min(_RANDOM, 64 - len(prefix)))
    return prefix[: 64 - size] + "".join(secrets.choice(_ALPHABET) for _ in range(size))
