"""Run requests and control messages: what clients send to workers.

- `RunRequest` is published to `agentcast.runs.submit` (JetStream work queue).
- `ControlRequest` is a NATS request on `agentcast.ctl.<session>`, answered by
  the worker that holds the session with a `ControlReply`. No responder means
  no worker holds it (the session is not running).
- `RunRejected` goes to `agentcast.runs.rejected` for a request that cannot be
  tied to a valid session (bad JSON, invalid session id) or cannot run now.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class RunRequest(msgspec.Struct, frozen=True, kw_only=True):
    session: str
    prompt: str
    options: dict[str, Any] = {}


ControlOp = Literal["cancel", "message", "status"]


class ControlRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    op: ControlOp
    text: str | None = None
    """The follow-up message, for op `message`."""


class ControlReply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    ok: bool
    error: str | None = None
    run: int | None = None
    """The run a `message` started, or the current run for `status`."""
    state: str | None = None
    """For `status`: running or idle."""


class RunRejected(msgspec.Struct, frozen=True, kw_only=True):
    reason: str
    code: str
    session: str | None = None
    request: str = ""
    """The start of the request as received, for the submitter to recognise it."""
