"""Starting runs and steering them: shared by the HTTP API and the WebSocket ops.

The run number returned to a client is the session's last `run.queued` run
plus one, read from the stream (a direct get of the last message on
`agentcast.evt.<session>.run.queued`). It is a prediction: the worker numbers
runs when it takes them, so two requests racing on one session, or one still
waiting in the queue, can shift it. The session's events are authoritative.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Final

import msgspec
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import APIError

from agentcast.codec import control_reply_decoder, decode_loose, encode
from agentcast.control import ControlReply, ControlRequest, RunRequest
from agentcast.errors import PolicyViolation, PromptTooLarge, QueueFull
from agentcast.policy import resolve_options, validate_prompt
from agentcast.sessions import validate_session_id
from agentcast.settings import Settings
from agentcast.subjects import EVENTS_STREAM, RUNS_SUBMIT, ctl_subject, event_subject
from gateway.errors import ApiError, unavailable
from gateway.replay import DirectReader

logger = logging.getLogger(__name__)

_MAXIMUM_MESSAGES_EXCEEDED = 10077
"""JetStream's error code for a publish refused by a full stream (max_msgs, discard new)."""
_WORKER_S: Final = 1.0
_PING_S: Final = 0.4


def check_prompt(prompt: object, settings: Settings, field: str = "prompt") -> str:
    """The prompt, or a 400 (empty) / 413 (too large) ApiError."""
    try:
        return validate_prompt(prompt, settings, field)
    except PromptTooLarge as exc:
        raise ApiError(413, "prompt_too_large", str(exc)) from exc
    except PolicyViolation as exc:
        raise ApiError(400, "invalid_prompt", str(exc)) from exc


def check_options(options: object, settings: Settings) -> dict[str, Any]:
    """The client's own options if server policy allows them (the worker fills in defaults)."""
    resolve_options(options, settings)  # raises PolicyViolation: a 400 policy_violation
    assert options is None or isinstance(options, dict)
    return {k: v for k, v in (options or {}).items() if v is not None}


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
        if isinstance(exc, APIError) and exc.err_code == _MAXIMUM_MESSAGES_EXCEEDED:
            raise QueueFull(settings.max_queued_runs) from exc
        logger.warning("run request for %s not queued: %r", sid, exc)  # not told to the client
        raise unavailable("could not queue the run: JetStream did not accept it") from exc
    return run


async def _ask(nc: Any, session: str, request: ControlRequest) -> ControlReply | None:
    """The reply of the worker holding `session`, or None when no worker holds it."""
    try:
        msg = await nc.request(ctl_subject(session), encode(request), timeout=_WORKER_S)
    except NoRespondersError:
        return None
    except NatsTimeoutError as exc:
        # A worker answers from its loop in milliseconds: no answer is NATS itself stalling,
        # or the worker. A request to the server tells which (not nc.flush(timeout): nats-py
        # 2.16 leaves the timed-out PONG's future cancelled, and its read loop dies on it).
        await nc.jetstream(timeout=_PING_S).stream_info(EVENTS_STREAM)
        raise ApiError(
            504, "worker_timeout", f"the worker of session {session!r} did not answer"
        ) from exc
    try:
        return control_reply_decoder.decode(msg.data)
    except msgspec.DecodeError as exc:
        raise ApiError(
            502, "bad_worker_reply", "the worker's reply was not a ControlReply"
        ) from exc


def _accepted(reply: ControlReply) -> ControlReply:
    if not reply.ok:
        raise ApiError(
            409, "not_running" if reply.error is None else "refused", reply.error or "refused"
        )
    return reply


async def cancel_run(nc: Any, session: str) -> ControlReply:
    """Ask the worker that holds `session` to cancel; 409 `not_running` when none does."""
    reply = await _ask(nc, session, ControlRequest(op="cancel"))
    if reply is None:
        raise ApiError(409, "not_running", f"no run is active in session {session!r}")
    return _accepted(reply)


async def follow_up(
    nc: Any, js: Any, reader: DirectReader, settings: Settings, *, session: str, text: object
) -> int:
    """Send a follow-up message; returns the run it starts.

    The worker that still holds the session runs it at once. When none does
    (its hold ended, or its worker restarted), the message becomes a run
    request for the same session, and whichever worker takes it resumes the
    conversation. A session with no events at all is a 404.
    """
    text = check_prompt(text, settings, field="text")
    reply = await _ask(nc, session, ControlRequest(op="message", text=text))
    if reply is not None:
        return _accepted(reply).run or 0
    if await reader.last(event_subject(session, "run.queued")) is None:
        raise ApiError(404, "not_found", f"no session {session!r}")
    return await submit_run(js, reader, settings, prompt=text, session=session, options=None)
