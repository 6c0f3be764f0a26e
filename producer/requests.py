"""Run requests as received: parse, validate, or say exactly why not (pure)."""

from __future__ import annotations

from typing import Any

import msgspec

from agentcast.codec import json_decoder
from agentcast.control import RunRejected, RunRequest
from agentcast.errors import PolicyViolation
from agentcast.policy import RunOptions, resolve_options, validate_prompt
from agentcast.sessions import is_valid_session_id
from agentcast.settings import Settings


class RefusedRun(msgspec.Struct, frozen=True, kw_only=True):
    """A request for a valid session that policy refuses: it gets run.failed there."""

    session: str
    prompt: str
    options: dict[str, Any]
    error: str


class AcceptedRun(msgspec.Struct, frozen=True, kw_only=True):
    request: RunRequest
    options: RunOptions


def parse_run_request(raw: bytes, settings: Settings) -> AcceptedRun | RefusedRun | RunRejected:
    """Classify a request: run it, fail it on its session, or reject it outright."""
    excerpt = raw[:200].decode(errors="replace")
    try:
        body = json_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        return RunRejected(code="invalid_json", reason=f"not JSON: {exc}", request=excerpt)
    if not isinstance(body, dict):
        return RunRejected(
            code="invalid_request", reason="a run request must be a JSON object", request=excerpt
        )
    session = body.get("session")
    if not is_valid_session_id(session):
        return RunRejected(
            code="invalid_session",
            reason="session must match ^[A-Za-z0-9_-]{1,64}$",
            request=excerpt,
        )
    assert isinstance(session, str)
    prompt = body.get("prompt")
    raw_options = body.get("options")
    options_for_record = raw_options if isinstance(raw_options, dict) else {}
    try:
        prompt = validate_prompt(prompt, settings)
        options = resolve_options(raw_options, settings)
    except PolicyViolation as exc:
        return RefusedRun(
            session=session,
            prompt=prompt if isinstance(prompt, str) else "",
            options=options_for_record,
            error=str(exc),
        )
    request = RunRequest(session=session, prompt=prompt, options=options_for_record)
    return AcceptedRun(request=request, options=options)
