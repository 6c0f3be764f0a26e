"""Errors of agentcast: one base, drawn whole (tests/test_errors.py checks the drawing).

AgentcastError                       (module where it is defined; HTTP status in the gateway)
├── InvalidSessionId      400  a session id outside ^[A-Za-z0-9_-]{1,64}$
├── InvalidSubject        400  a subject that is not an agentcast event subject
├── InvalidCursor         400  a cursor that does not parse
├── PolicyViolation       400  a run option outside server policy
│   └── PromptTooLarge    400  a prompt over max_prompt_bytes
├── TokenError            401  a token that is malformed, badly signed, expired or revoked (agentcast/tokens.py)
│   └── TokenTooOld       401  issued longer ago than `token_max_lifetime_s`, whatever its `exp`
├── LimitExceeded         429  a client took more than a limit allows; carries `retry_after_s`
│   ├── TooManyStreams    429  `too_many_streams`: open streams per token jti, subscriptions per socket
│   ├── RateLimited       429  `rate_limited`: run submissions per token, frames per socket
│   └── QueueFull         503  `queue_full`: AGENTCAST_RUNS holds max_queued_runs requests
├── NatsUnavailable       503  NATS or JetStream did not answer in time; carries `retry_after_s`
│   └── ReplayError       503  a replay read that JetStream did not answer (gateway/replay.py)
├── ApiError              any  an answer with its own status and code (gateway/errors.py)
│   └── Refusal           any  one with response headers the client acts on (gateway/durable/producers.py)
│       └── StreamClosed  409  an append to a closed app stream (gateway/durable/appstreams.py)
├── ReplayBusy            —    too many replays running or waiting; told in the stream with a
│                              jittered retry (SSE `retry:`, WS error frame) (gateway/admission.py)
├── PublishFailed         500  a session's events cannot be published: the run must stop
│   ├── DeliveryTimeout   500  events could not reach JetStream within the bound
│   └── WriterConflict    500  another writer published on the session (JetStream refused ours)
├── LeaseHeld             500  another process owns this share of the work (consumers/lease.py)
├── LeaseLost             500  a lease could not be renewed in time (consumers/lease.py)
├── NatsServerError       500  the embedded nats-server failed (agentcast/embedded.py)
├── ChildFailed           500  a supervised role exited (agentcast/supervisor.py)
└── ClientError           —    what the gateway answered a client (agentcast/client/errors.py)
    ├── AuthError         401/403  the token, or what it allows, was refused
    │   ├── Unauthorized  401
    │   └── Forbidden     403
    ├── NotFound          404
    ├── CursorExpired     410  resume cannot be exact; carries `earliest`
    └── GatewayUnreachable —   no answer from the gateway

The gateway (gateway/errors.py) answers the 400s, 401 and limits with their `code`,
NatsUnavailable (and nats-py's own timeouts and connection errors) as 503
`nats_unavailable` with Retry-After, and anything else as 500 `internal`.
"""

from __future__ import annotations


class AgentcastError(Exception):
    """Base of every error raised by agentcast."""

    code = "error"


class InvalidSessionId(AgentcastError, ValueError):
    code = "invalid_session"

    def __init__(self, value: object) -> None:
        self.value = value
        shown = (
            repr(value)
            if not isinstance(value, str) or len(value) <= 80
            else repr(value[:80]) + "..."
        )
        super().__init__(f"invalid session id {shown}: must match ^[A-Za-z0-9_-]{{1,64}}$")


class InvalidSubject(AgentcastError, ValueError):
    code = "invalid_subject"

    def __init__(self, subject: str) -> None:
        self.subject = subject
        super().__init__(f"not an agentcast event subject: {subject!r}")


class InvalidCursor(AgentcastError, ValueError):
    code = "invalid_cursor"

    def __init__(self, value: str) -> None:
        self.value = value
        super().__init__(f"invalid cursor {value[:80]!r}: expected a cursor from an earlier event")


class PolicyViolation(AgentcastError, ValueError):
    code = "policy_violation"

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class PromptTooLarge(PolicyViolation):
    code = "prompt_too_large"


class NatsUnavailable(AgentcastError):
    """NATS or JetStream did not answer in time: the client should retry after a moment."""

    code = "nats_unavailable"
    retry_after_s = 2


class PublishFailed(AgentcastError):
    """The publisher of a session gave up; `code` is the closing run.failed's `kind`."""

    code = "publish_failed"
    session: str


class DeliveryTimeout(PublishFailed):
    code = "delivery_timeout"

    def __init__(self, session: str, pending: int, waited_s: float) -> None:
        self.session = session
        self.pending = pending
        self.waited_s = waited_s
        super().__init__(
            f"session {session}: {pending} events not acknowledged by JetStream after {waited_s:.1f}s"
        )


class WriterConflict(PublishFailed):
    """JetStream refused an event because the session's last event is not the one we wrote.

    `expected` is the stream sequence of our previous event (what the publish
    said must be last); `found_seq` and `found_stream_seq` are what is last.
    """

    code = "writer_conflict"

    def __init__(
        self, session: str, seq: int, expected: int, found_seq: int, found_stream_seq: int
    ) -> None:
        self.session = session
        self.seq = seq
        self.expected = expected
        self.found_seq = found_seq
        self.found_stream_seq = found_stream_seq
        super().__init__(
            f"session {session}: another writer published on the session: event seq {seq} "
            f"expected stream seq {expected} last, found seq {found_seq} "
            f"at stream seq {found_stream_seq}"
        )


class LimitExceeded(AgentcastError):
    """A client went past a limit of SPEC "Limits"; it may try again after `retry_after_s`."""

    code = "limit_exceeded"
    status = 429
    limit = ""
    """The setting that was crossed (a label of the gateway's limit-hits metric)."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class TooManyStreams(LimitExceeded):
    """Streams per token (`max_streams_per_token`) or subscriptions per socket."""

    code = "too_many_streams"

    def __init__(self, limit: str, message: str) -> None:
        self.limit = limit
        super().__init__(message, 1)


class RateLimited(LimitExceeded):
    code = "rate_limited"

    def __init__(self, limit: str, message: str, retry_after_s: int = 1) -> None:
        self.limit = limit
        super().__init__(message, retry_after_s)


class QueueFull(LimitExceeded):
    code = "queue_full"
    status = 503
    limit = "max_queued_runs"

    def __init__(self, queued: int) -> None:
        super().__init__(f"{queued} run requests are already queued; try again later", 5)
