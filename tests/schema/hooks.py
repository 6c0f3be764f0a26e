"""schemathesis hooks and checks for tests/test_schema.py (loaded through SCHEMATHESIS_HOOKS).

One check of our own, beside schemathesis' (`--checks all` runs it too): an
error message tells the client what to do, and never shows the gateway's
insides (a Python repr, a traceback, nats-py's or JetStream's own words).

Two failures are not the gateway's fault, and only these exact cases are
dropped; every other failure stands:
- A well-formed cursor (`from=<digits>`, `Last-Event-ID` or a Durable Streams
  `offset=<digits>`) that this stream never issued. The schema can say what a
  cursor looks like, not which cursors exist, so a generated one is answered
  400 `invalid_cursor` (or 410 `cursor_expired`), as an unknown id is answered 404.
- 503 `queue_full` (SPEC "Limits"): schemathesis queues runs that no worker
  takes, and the bounded run queue says so, with Retry-After, as documented.
- Two combinations of stream parameters that OpenAPI cannot forbid, refused
  with the 400 their descriptions name: `types=` with `format=ag-ui` or
  `ai-sdk` (`invalid_types`: a filtered AG-UI or AI SDK stream is not a valid
  one), and `format=ai-sdk` over a glob of many sessions (`invalid_format`: an
  AI SDK stream is one run). tests/test_format_aisdk.py and
  tests/test_format_pure.py check both refusals.
- Three of the Durable Streams protocol (docs/durable-streams.md), refused with the
  400 their parameters' descriptions name: `live=` without `offset=`
  (`invalid_cursor`), some but not all of `Producer-Id`, `-Epoch`, `-Seq`
  (`invalid_producer`), and an append with no body that does not close the stream
  (`invalid_content_type`: a body is optional only with `Stream-Closed: true`).
"""

from __future__ import annotations

import json
import re
from typing import Any

import schemathesis
from schemathesis.core import NOT_SET

_CURSOR_ANSWERS = {(400, "invalid_cursor"), (410, "cursor_expired")}
_POSITIVE_DATA_REJECTED = "ST202"
_SERVER_ERROR = "ST101"
_INSIDES = re.compile(
    r"Traceback|<[A-Za-z_.]+ object at 0x|<Header\.|nats\.|JetStream|Error\(|\{'Status'"
)


@schemathesis.check
def error_shows_no_insides(ctx: Any, response: Any, case: Any) -> bool | None:
    if response.status_code < 400:
        return None
    found = _INSIDES.search(response.content.decode(errors="replace"))
    if found:
        raise AssertionError(f"the error shows the gateway's insides: {found.group()!r}")
    return None


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    answer = (response.status_code, _code(response))
    if failure.code == _SERVER_ERROR:
        return answer != (503, "queue_full")
    if failure.code != _POSITIVE_DATA_REJECTED:
        return True
    if answer in _FORMAT_COMBINATIONS and _FORMAT_COMBINATIONS[answer](case.query or {}):
        return False
    if answer in _DURABLE_COMBINATIONS and _DURABLE_COMBINATIONS[answer](case):
        return False
    return not (_names_cursor(case) and answer in _CURSOR_ANSWERS)


_FORMAT_COMBINATIONS = {
    (400, "invalid_types"): lambda q: (
        q.get("format") in ("ag-ui", "ai-sdk") and bool(q.get("types"))
    ),
    (400, "invalid_format"): lambda q: q.get("format") == "ai-sdk",
}


_PRODUCER = ("producer-id", "producer-epoch", "producer-seq")


def _headers(case: Any) -> dict[str, str]:
    return {k.lower(): str(v) for k, v in (case.headers or {}).items()}


def _durable(case: Any) -> bool:
    return str(case.path).startswith("/ds/v1/")


_DURABLE_COMBINATIONS = {
    (400, "invalid_cursor"): lambda c: (
        _durable(c) and "live" in (c.query or {}) and "offset" not in (c.query or {})
    ),
    (400, "invalid_producer"): lambda c: (
        _durable(c) and 0 < sum(h in _headers(c) for h in _PRODUCER) < len(_PRODUCER)
    ),
    (400, "invalid_content_type"): lambda c: (
        _durable(c) and c.method.upper() == "POST" and c.body is NOT_SET
        and _headers(c).get("stream-closed", "").strip().lower() != "true"
    ),
}  # fmt: skip


def _code(response: Any) -> str | None:
    try:
        code = json.loads(response.content)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None


def _names_cursor(case: Any) -> bool:
    query = case.query or {}
    start, offset = str(query.get("from", "")), str(query.get("offset", ""))
    last = _headers(case).get("last-event-id", "")
    return start.isdigit() or last.isdigit() or (_durable(case) and offset.isdigit())
