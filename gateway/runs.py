"""Starting runs and steering them: shared by the HTTP API and the WebSocket ops.

The run number returned to a client is the session's last `run.queued` run
plus one, read from the stream (a direct get of the last message on
`agentcast.evt.<session>.run.queued`). It is a prediction: the worker numbers
runs when it takes them, so two requests racing on one session, or one still
waiting in the queue, can shift it. The session's events are authoritative.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

import msgspec
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from agentcast.codec import decode_loose, encode
from agentcast.control import ControlReply, ControlRequest, RunRequest
from agentcast.errors import PolicyViolation
from agentcast.sessions import validate_session_id
from agentcast.settings import Settings
from agentcast.subjects import RUNS_SUBMIT, ctl_subject, event_subject
from gateway.errors import ApiError
from gateway.replay import DirectReader

_CLIENT_OPTIONS = frozenset({"model", "max_turns", "allowed_tools"})
_reply_decoder = msgspec.json.Decoder(ControlReply)


def check_prompt(prompt: object, settings: Settings, field: str = "prompt") -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise ApiError(400, "invalid_prompt", f"{field} must be a non-empty string")
    size = len(prompt.encode())
    if size > settings.max_prompt_bytes:
        raise ApiError(
            413,
            "prompt_too_large",
            f"{field} is {size} bytes, over the limit of {settings.max_prompt_bytes}",
        )
    return prompt


def check_options(options: object, settings: Settings) -> dict[str, Any]:
    """The client's options if server policy allows them (the worker fills in defaults)."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise PolicyViolation("options", "must be an object")
    unknown = sorted(set(options) - _CLIENT_OPTIONS)
    if unknown:
        raise PolicyViolation(f"options.{unknown[0]}", "set by server policy, not by clients")
    model = options.get("model")
    allowed = set(settings.allowed_models) | {settings.default_model}
    if model is not None and model not in allowed:
        raise PolicyViolation("options.model", f"must be one of: {', '.join(sorted(allowed))}")
    turns = options.get("max_turns")
    if turns is not None and (
        isinstance(turns, bool)
        or not isinstance(turns, int)
        or not 1 <= turns <= settings.max_turns
    ):
        raise PolicyViolation(
            "options.max_turns", f"must be an integer from 1 to {settings.max_turns}"
        )
    tools = options.get("allowed_tools")
    if tools is not None:
        if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
            raise PolicyViolation("options.allowed_tools", "must be a list of tool names")
        outside = sorted(set(tools) - set(settings.allowed_tools))
        if outside:
            raise PolicyViolation(
                "options.allowed_tools", f"not allowed by server policy: {', '.join(outside)}"
            )
    return {k: v for k, v in options.items() if v is not None}


async def submit_run(
    js: Any,
    reader: DirectReader,
    settings: Settings,
    *,
    prompt: object,
    session: str,
    options: object,
) -> int:
    """Check and publish a run request for a checked session; returns the predicted run number."""
    prompt = check_prompt(prompt, settings)
    checked = check_options(options, settings)
    sid = validate_session_id(session)
    last = await reader.last(event_subject(sid, "run.queued"))
    run = decode_loose(last.data).run + 1 if last is not None else 1
    request = RunRequest(session=sid, prompt=prompt, options=checked)
    try:
        await js.publish(RUNS_SUBMIT, encode(request), headers={"Nats-Msg-Id": uuid.uuid4().hex})
    except Exception as exc:
        raise ApiError(503, "unavailable", f"could not queue the run: {exc!r}") from exc
    return run


async def control(
    nc: Any, session: str, op: Literal["cancel", "message"], text: str | None = None
) -> ControlReply:
    """Ask the worker that owns `session`; 409 `not_running` when none does."""
    request = ControlRequest(op=op, text=text)
    try:
        msg = await nc.request(ctl_subject(session), encode(request), timeout=5.0)
    except NoRespondersError as exc:
        raise ApiError(409, "not_running", f"no run is active in session {session!r}") from exc
    except NatsTimeoutError as exc:
        raise ApiError(
            504, "worker_timeout", f"the worker of session {session!r} did not answer"
        ) from exc
    try:
        reply = _reply_decoder.decode(msg.data)
    except msgspec.DecodeError as exc:
        raise ApiError(
            502, "bad_worker_reply", "the worker's reply was not a ControlReply"
        ) from exc
    if not reply.ok:
        raise ApiError(
            409, "not_running" if reply.error is None else "refused", reply.error or "refused"
        )
    return reply
