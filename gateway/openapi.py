"""The OpenAPI truth: every answer a route can give, declared once here, used by the decorators.

A route names the statuses it answers: `responses=openapi.answers(200, 400, 404, ...)`
(or one of the sets below), and gets the one error body, the `Retry-After` /
`WWW-Authenticate` headers and a description of when each happens. Every route
also answers 413 (request or header too large, SPEC "Limits"), added by `answers`.
Parameters that carry a session id, cursor, glob or type list use the
Annotated aliases here, so their patterns are in the schema while the gateway
still checks them itself (400 with its own error code, not FastAPI's 422).
`install` fills in what depends on the deployment (run policy, prompt size).
tests/test_schema.py holds the schema to the live gateway with schemathesis.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

import msgspec
from fastapi import FastAPI, Header, Path, Query
from pydantic import BaseModel, ConfigDict

from agentcast.events import EVENT_TYPES
from agentcast.policy import VISIBLE_CHAR
from agentcast.progress import STATES, ProgressSnapshot
from agentcast.sessions import SESSION_ID_PATTERN
from agentcast.settings import Settings
from gateway.params import FORMATS, GLOB_PATTERN, MAX_COALESCE_MS, MAX_TYPES

Responses = dict[int | str, dict[str, Any]]

SESSION_ID: Final = f"^{SESSION_ID_PATTERN.pattern}$"
_SEQ: Final = "[1-9][0-9]{0,19}"
CURSOR: Final = f"^(start|now|{_SEQ})$"
LAST_EVENT_ID: Final = f"^({_SEQ})?$"
SESSION_GLOB: Final = f"^{GLOB_PATTERN}$"
"""Empty means the default glob (the token's, or `*`)."""


def _type_patterns() -> str:
    """Every known type, and every `prefix.*` that matches one (gateway/params.parse_types)."""
    prefixes = {t.rsplit(".", i)[0] + ".*" for t in EVENT_TYPES for i in range(1, t.count(".") + 1)}
    return "|".join(re.escape(p) for p in sorted(EVENT_TYPES | prefixes, key=len, reverse=True))


_TYPE: Final = _type_patterns()
TYPES_ITEM: Final = rf"^\s*(({_TYPE})\s*)?(,\s*(({_TYPE})\s*)?)*$"
"""One `types=` value: comma-separated types or prefixes, blanks ignored."""


class RunAccepted(BaseModel):
    """202 to `POST /v1/runs`: where the run's events are."""

    session: str
    run: int
    events_url: str
    ws_url: str


class ControlAnswer(BaseModel):
    """200 to a cancel or a follow-up: the run it acts on."""

    session: str
    ok: bool
    run: int | None


def snapshots(many: bool) -> Responses:
    """A 200 of progress snapshots (agentcast/progress.py, its schema added by `install`)."""
    one = {"$ref": f"#/components/schemas/{ProgressSnapshot.__name__}"}
    body = (
        {"type": "object", "properties": {"sessions": {"type": "array", "items": one}},
         "required": ["sessions"]}
        if many
        else one
    )  # fmt: skip
    return {200: {"content": {"application/json": {"schema": body}}}}


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")  # e.g. retry_after_s, earliest

    code: str
    message: str


class ErrorBody(BaseModel):
    """Every 4xx and 5xx: `{"error": {"code": ..., "message": ...}}`."""

    error: ErrorDetail


_WHY: Final = {
    400: "invalid input, named by `code` (invalid_session, invalid_cursor, invalid_types, "
    "invalid_sessions, invalid_state, invalid_prompt, policy_violation...)",
    401: "no token, or one that is malformed, badly signed or expired (`unauthorized`)",
    403: "the token lacks the scope, or does not cover the session or glob (`forbidden`)",
    404: "no such session (`not_found`)",
    409: "no run to act on (`not_running`), or the worker refused (`refused`)",
    410: "`cursor_expired`: the cursor is older than retention; `earliest` names the first",
    413: "request, header or prompt over its size limit (`too_large`, `prompt_too_large`)",
    422: "a body or parameter of the wrong shape (`invalid_request`)",
    429: "a per-token limit (`too_many_streams`, `rate_limited`); see Retry-After",
    502: "the session's worker sent a reply that is not one (`bad_worker_reply`)",
    503: "NATS or JetStream is not answering (`nats_unavailable`), the run queue is full "
    "(`queue_full`), or the gateway is not ready; see Retry-After",
    504: "the session's worker did not answer in time (`worker_timeout`)",
}
_RETRY_AFTER: Final = {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}}
_HEADERS: Final[dict[int, dict[str, Any]]] = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    429: _RETRY_AFTER,
    503: _RETRY_AFTER,
}


def answers(*statuses: int, ok: Responses | None = None) -> Responses:
    """The declaration of a route that answers `statuses` (and 413), `ok` its success bodies."""
    declared: Responses = dict(ok or {})
    for status in sorted({*statuses, 413}):
        if status < 400:
            declared.setdefault(status, {})
            continue
        declared[status] = {"model": ErrorBody, "description": _WHY[status]}
        if status in _HEADERS:
            declared[status]["headers"] = _HEADERS[status]
    return declared


def stream(description: str) -> Responses:
    """A 200 that is an SSE stream."""
    return {200: {"content": {"text/event-stream": {}}, "description": description}}


AUTHED: Final = (401, 403, 503)
"""Every route behind a token (503: the gateway cannot reach NATS)."""
READ: Final = (*AUTHED, 400, 422)
STREAM: Final = (*READ, 410, 429)
CONTROL: Final = (*READ, 409, 502, 504)
SUBMIT: Final = (*READ, 429)

SessionPath = Annotated[
    str, Path(description="a session id", json_schema_extra={"pattern": SESSION_ID})
]
FromQuery = Annotated[
    str | None,
    Query(
        alias="from", description="start | now | <cursor>", json_schema_extra={"pattern": CURSOR}
    ),
]
TypesQuery = Annotated[
    list[str] | None,
    Query(
        description=f"e.g. text.delta,tool.* (at most {MAX_TYPES} distinct)",
        json_schema_extra={"items": {"type": "string", "pattern": TYPES_ITEM}},
    ),
]
LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        description="a cursor; overrides `from`",
        json_schema_extra={"pattern": LAST_EVENT_ID},
    ),
]
SessionsQuery = Annotated[
    str | None,
    Query(description="a session glob, e.g. team_*", json_schema_extra={"pattern": SESSION_GLOB}),
]
FormatQuery = Annotated[
    str | None,
    Query(
        alias="format",
        description="the wire format: agentcast (default), ag-ui, ai-sdk; ag-ui and ai-sdk "
        "refuse `types=` (400 invalid_types), ai-sdk refuses a glob of many sessions "
        "(400 invalid_format)",
        json_schema_extra={"enum": list(FORMATS)},
    ),
]
AcceptHeader = Annotated[
    str | None, Header(alias="Accept", description="may name a format instead of `format=`")
]
CoalesceQuery = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_COALESCE_MS,
        description="ms: merge consecutive text deltas of a block within this window",
    ),
]
RunQuery = Annotated[int | None, Query(ge=1, description="stream this run (waits if queued)")]
StateQuery = Annotated[
    str | None,
    Query(description="only sessions in this state", json_schema_extra={"enum": list(STATES)}),
]


def _text(settings: Settings, description: str) -> dict[str, Any]:
    return {
        "type": "string",
        "pattern": VISIBLE_CHAR,
        "maxLength": settings.max_prompt_bytes,
        "description": f"{description}; at most {settings.max_prompt_bytes} bytes of UTF-8",
    }


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def policy_schema(settings: Settings) -> dict[str, Any]:
    """The run options a client may set under this server's policy (agentcast/policy.py)."""
    models = sorted({*settings.allowed_models, settings.default_model})
    options = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "model": _nullable({"enum": models}),
            "max_turns": _nullable(
                {"type": "integer", "minimum": 1, "maximum": settings.max_turns}
            ),
            "allowed_tools": _nullable(
                {"type": "array", "items": {"enum": list(settings.allowed_tools)}}
            ),
        },
        "description": "bounded by server policy; cwd and permission mode are the server's",
    }
    return _nullable(options)


_BODIES: Final = {"RunBody": "prompt", "MessageBody": "text"}
_SNAPSHOT_SCHEMAS: Final = msgspec.json.schema_components(
    [ProgressSnapshot], ref_template="#/components/schemas/{name}"
)[1]


def _not_null(parameter: dict[str, Any]) -> None:
    """A query parameter or header is optional by being absent, never `null` on the wire
    (FastAPI writes `str | None` as anyOf string/null, and a client may then send "null")."""
    schema = parameter["schema"]
    kinds = schema.get("anyOf", [])
    if len(kinds) == 2 and {"type": "null"} in kinds:
        schema.pop("anyOf")
        parameter["schema"] = {**next(k for k in kinds if k != {"type": "null"}), **schema}


def install(app: FastAPI, settings: Settings) -> None:
    """Serve the schema with this deployment's policy in it (built once, on first request)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for path in schema["paths"].values():
                for operation in path.values():
                    for parameter in operation.get("parameters", []):
                        _not_null(parameter)
            bodies = schema["components"]["schemas"]
            for name, field in _BODIES.items():
                props = bodies[name]["properties"]
                props[field] = _text(settings, props[field].get("description", field))
            bodies["RunBody"]["properties"]["options"] = policy_schema(settings)
            bodies.update(_SNAPSHOT_SCHEMAS)
            bodies["RunBody"]["properties"]["session"] = {
                **_nullable({"type": "string", "pattern": SESSION_ID}),
                "description": "a session id; the server makes one when absent or null",
            }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
