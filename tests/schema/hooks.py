"""schemathesis hooks for tests/test_schema.py (loaded through SCHEMATHESIS_HOOKS).

One failure is not the gateway's fault: a well-formed cursor (`from=<digits>`
or `Last-Event-ID`) that this stream never issued. The schema can say what a
cursor looks like, not which cursors exist, so a generated one is answered 400
`invalid_cursor` (or 410 `cursor_expired`), like an unknown id is answered 404.
Only that exact case is dropped; every other failure stands.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis

_CURSOR_ANSWERS = {(400, "invalid_cursor"), (410, "cursor_expired")}
_POSITIVE_DATA_REJECTED = "ST202"


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    if failure.code != _POSITIVE_DATA_REJECTED or not _names_cursor(case):
        return True
    try:
        code = json.loads(response.content)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return True
    return (response.status_code, code) not in _CURSOR_ANSWERS


def _names_cursor(case: Any) -> bool:
    start = str((case.query or {}).get("from", ""))
    last = str({k.lower(): v for k, v in (case.headers or {}).items()}.get("last-event-id", ""))
    return start.isdigit() or last.isdigit()
