"""The Durable Streams routes' OpenAPI declarations, the way gateway/openapi.py declares the rest.

The routes read their query parameters and protocol headers from the request
themselves (gateway/durable/read.py, routes.py, producers.py), so these are
declared here (`openapi_extra`) with the patterns and enums of those checks.
Not declared: `Stream-TTL`, `Stream-Expires-At`, `Stream-Forked-From`, which
are always refused (400 `unsupported`, docs/durable-streams.md).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import Path
from starlette.responses import Response

from gateway.durable.offsets import OFFSET
from gateway.durable.producers import EPOCH, ID, MAX_ID, NUMBER, SEQ
from gateway.openapi import AUTHED, READ, SESSION_ID, STREAM, Responses, answers

StreamNamePath = Annotated[
    str,
    Path(description="an application stream's name", json_schema_extra={"pattern": SESSION_ID}),
]


def _param(where: str, name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": where, "required": False, "description": description,
            "schema": {"type": "string", **schema}}  # fmt: skip


_OFFSET: Final = _param(
    "query",
    "offset",
    "-1 (the start, the default), now (the tail) or an offset read before",
    pattern=f"^({OFFSET.pattern})$",
)
_READ: Final = [
    _OFFSET,
    _param(
        "query",
        "live",
        "long-poll or sse; needs an offset (400 invalid_cursor)",
        enum=["long-poll", "sse"],
    ),
    _param("query", "cursor", "the last Stream-Cursor; any other value is ignored"),
    _param("header", "If-None-Match", "ETags of earlier catch-up reads (304 on a match)"),
]
_WRITE: Final = [
    _param("header", "Stream-Seq", "a writer's sequence: greater, as text, than the latest one"),
    _param("header", "Stream-Closed", "`true` (any case) closes the stream; anything else not"),
    _param(
        "header",
        ID,
        f"an idempotent producer, 1 to {MAX_ID} characters; with "
        f"{EPOCH} and {SEQ}, or none of the three (400 invalid_producer)",
        minLength=1,
        maxLength=MAX_ID,
    ),
    _param("header", EPOCH, "the producer's epoch", pattern=f"^{NUMBER.pattern}$"),
    _param("header", SEQ, "the producer's sequence", pattern=f"^{NUMBER.pattern}$"),
]
_OFFSET_HEADER: Final = {"schema": {"type": "string", "pattern": "^[0-9]{20}$"}}
_HEADERS: Final = {
    "Stream-Next-Offset": {**_OFFSET_HEADER, "description": "the offset to read after next"},
    "Stream-Up-To-Date": {"schema": {"enum": ["true"]}, "description": "the read reached the tail"},
    "Stream-Closed": {"schema": {"enum": ["true"]}, "description": "the stream is closed"},
    "Stream-Cursor": {"schema": {"type": "string", "pattern": "^[0-9]+$"}},
    "ETag": {"schema": {"type": "string"}, "description": "names the range read"},
}
_ANY: Final[dict[str, Any]] = {"*/*": {"schema": {}}}


_SSE_EVENT: Final = {
    "type": "object",
    "properties": {"event": {"enum": ["data", "control"]}, "data": {"type": "string"}},
    "required": ["event", "data"],
    "description": "data: the values (JSON array) or bytes (base64 when binary); control: "
    "JSON with streamNextOffset, streamCursor, upToDate, streamClosed",
}


def _read_ok(body: dict[str, Any]) -> Responses:
    sse = {"text/event-stream": {"schema": _SSE_EVENT}}
    return {
        200: {"description": "the catch-up body (a JSON array in JSON mode); with live=sse, "
              "Durable Streams SSE (event: data, event: control)", "content": {**body, **sse},
              "headers": _HEADERS},
        204: {"description": "long-poll: nothing new before the timeout", "headers": _HEADERS},
        304: {"description": "If-None-Match named this read's ETag", "headers": _HEADERS},
    }  # fmt: skip


_JSON_ARRAY: Final = {"application/json": {"schema": {"type": "array"}}}
_HEAD_OK: Final[Responses] = {200: {"description": "the tail offset, no body", "headers": _HEADERS}}


def read_route(summary: str, *, app: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The GET and HEAD declarations of a read route (an app stream's may be 404)."""
    missing = (404,) if app else ()
    body = {**_JSON_ARRAY, **_ANY} if app else _JSON_ARRAY
    # Tagged `streams`: schemathesis bounds reading them (tests/schema/schemathesis.toml).
    common = {"response_class": Response, "response_model": None, "tags": ["streams"]}
    get = {**common, "summary": summary, "openapi_extra": {"parameters": _READ},
           "responses": answers(*STREAM, 204, 304, *missing, ok=_read_ok(body))}  # fmt: skip
    head = {**common, "summary": f"{summary}: its tail (HEAD)",
            "openapi_extra": {"parameters": [_OFFSET]},
            "responses": answers(*READ, *missing, ok=_HEAD_OK)}  # fmt: skip
    return get, head


_JSON_VALUES: Final = {
    "anyOf": [
        {"type": ["null", "boolean", "number", "string", "object"]},
        {"type": "array", "minItems": 1},
    ],
    "description": "a value, or an array of values appended one by one",
}
_BYTES: Final = {"type": "string", "format": "binary"}


def _body(*, append: bool) -> dict[str, Any]:
    """Any content type: application/json (JSON mode), text/* (text), anything else (bytes);
    an append must store something, a create may be empty."""
    at_least = {"minLength": 1} if append else {}
    json_value = _JSON_VALUES if append else {}
    return {
        "required": False,
        "description": "an append without one only closes (Stream-Closed: true)"
        if append
        else "the stream's first data; its Content-Type is the stream's",
        "content": {
            "application/json": {"schema": json_value},
            "text/plain": {"schema": {"type": "string", **at_least}},
            "application/octet-stream": {"schema": {**_BYTES, **at_least}},
        },
    }


_WRITTEN: Final = {"Stream-Next-Offset": _HEADERS["Stream-Next-Offset"],
                   "Stream-Closed": _HEADERS["Stream-Closed"]}  # fmt: skip
_WRITES: Final = (*AUTHED, 400, 422)


def _links() -> dict[str, Any]:
    """What a client does next with the stream it made (schemathesis' stateful phase too)."""
    ops = {"append": "app_append", "read": "app_read", "delete": "app_delete"}
    method = {"append": "post", "read": "get", "delete": "delete"}
    return {
        link: {"operationId": f"{op}_ds_v1_stream__name__{method[link]}",
               "parameters": {"name": "$request.path.name"}}
        for link, op in ops.items()
    }  # fmt: skip


CREATE: Final[dict[str, Any]] = {
    "summary": "Create an application stream", "response_class": Response,
    "openapi_extra": {"parameters": _WRITE, "requestBody": _body(append=False)},
    "responses": answers(*_WRITES, 409, ok={
        201: {"description": "created", "headers": _WRITTEN, "links": _links()},
        200: {"description": "it exists with this content type", "headers": _WRITTEN,
              "links": _links()}}),
}  # fmt: skip
APPEND: Final[dict[str, Any]] = {
    "summary": "Append to an application stream", "response_class": Response,
    "openapi_extra": {"parameters": _WRITE, "requestBody": _body(append=True)},
    "responses": answers(*_WRITES, 404, 409, ok={
        200: {"description": "a producer's append, stored", "headers": _WRITTEN},
        204: {"description": "stored (or a producer's duplicate, or only closed)",
              "headers": _WRITTEN}}),
}  # fmt: skip
DELETE: Final[dict[str, Any]] = {
    "summary": "Delete an application stream", "response_class": Response,
    "responses": answers(*_WRITES, 404, ok={204: {"description": "deleted"}}),
}  # fmt: skip
