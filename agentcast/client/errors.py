"""What the client raises when the gateway refuses a request.

ClientError (AgentcastError)   the gateway answered a 4xx: status, code, message
├── AuthError                  the token was refused
│   ├── Unauthorized           401: missing, malformed, expired or badly signed
│   └── Forbidden              403: valid, but its scopes or session glob do not cover this
├── NotFound                   404: no such session
├── CursorExpired              410: the cursor is older than retention; `.earliest` names
│                              the earliest cursor still available (None when nothing is)
└── GatewayUnreachable         no answer at all (connection refused, timed out): raised by
                               requests only; streams retry these by themselves
"""

from __future__ import annotations

from typing import Any

import httpx

from agentcast.codec import json_decoder
from agentcast.errors import AgentcastError


class ClientError(AgentcastError):
    """A request the gateway refused, with its HTTP status and the API's error code."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


class AuthError(ClientError):
    """The gateway refused the token (401) or what it allows (403)."""


class Unauthorized(AuthError):
    pass


class Forbidden(AuthError):
    pass


class NotFound(ClientError):
    pass


class CursorExpired(ClientError):
    """Resuming from this cursor cannot be exact: the events after it may be gone."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(status, code, message, **extra)
        earliest = extra.get("earliest")
        self.earliest: str | None = earliest if isinstance(earliest, str) else None


class GatewayUnreachable(ClientError):
    def __init__(self, url: str, cause: Exception) -> None:
        super().__init__(0, "unreachable", f"no answer from {url}: {cause!r}")


_BY_STATUS: dict[int, type[ClientError]] = {401: Unauthorized, 403: Forbidden, 404: NotFound}


def error_of(response: httpx.Response) -> ClientError:
    """The typed error of a refused response (its body already read)."""
    code, message, extra = f"http_{response.status_code}", response.reason_phrase, {}
    try:
        body = json_decoder.decode(response.content)
        error = body["error"]
        code, message = str(error["code"]), str(error["message"])
        extra = {k: v for k, v in error.items() if k not in ("code", "message")}
    except (ValueError, KeyError, TypeError):
        message = response.text[:200] or message
    if code == "cursor_expired":
        return CursorExpired(response.status_code, code, message, **extra)
    cls = _BY_STATUS.get(response.status_code, ClientError)
    return cls(response.status_code, code, message, **extra)
