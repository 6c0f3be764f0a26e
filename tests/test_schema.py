"""The OpenAPI schema tells the truth: schemathesis, every check, against a live gateway.

A real `agentcast gateway` on a NATS server of its own (tests/support/private_gateway.py:
the runs that schemathesis queues reach no other test's worker), a valid token, and the CLI
with `--checks all` over every phase (examples, coverage, fuzzing, stateful),
bounded by tests/schema/schemathesis.toml. A failure of any kind fails the
test, with schemathesis' report. `AGENTCAST_SCHEMA_SEED` picks another seed.

The stream holds one event of every type in session `0` (the id the coverage
phase uses), and KV its snapshot: a stream that has events is read up to its
first one, not for the whole stream timeout, and snapshot bodies get checked
against their schema. App stream `0` (JSON mode) exists, so appends reach the store.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentcast.progress import ProgressSnapshot
from agentcast.settings import Settings
from gateway.app import create_app
from tests.support.gateway import SECRET, GatewayProcess, auth, token
from tests.support.private_gateway import private_gateway
from tests.support.props import one_of_each_type

ROOT = Path(__file__).resolve().parent.parent
_SETTINGS = Settings.load({"nats_url": "nats://unused:4222", "jwt_secret": SECRET}, environ={})
CONFIG = ROOT / "tests" / "schema" / "schemathesis.toml"


@pytest.fixture(scope="module")
def live_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    snapshot = ProgressSnapshot(session="0", state="running", run=1, updated_at=1)
    # A Durable Streams long-poll at the tail waits this long for its 204 (a bound, low so
    # that the examples that wait do not add up).
    with private_gateway(
        tmp_path_factory.mktemp("schema"),
        events=one_of_each_type("0"),
        snapshots=[snapshot],
        env={"AGENTCAST_DURABLE_LONG_POLL_S": "0.5"},
    ) as gw:
        made = httpx.put(f"{gw.url}/ds/v1/stream/0", json=[{"n": 0}], headers=auth(("run",)))
        assert made.status_code == 201, made.text
        yield gw


# What schemathesis found on the way (and two marked otherwise), each as the request that
# showed it: (method, path, request arguments, status, error code or None, the finding).
FOUND = [
    ("TRACE", "/v1/runs", {}, 405, "method_not_allowed", "405 without Allow"),
    ("POST", "/v1/runs", {"json": {"prompt": "hi", "session": ""}}, 400, "invalid_session",
     '"" was replaced by a generated id'),
    ("POST", "/v1/runs", {"json": {"prompt": "hi", "options": {"model": {}}}}, 400,
     "policy_violation", "a dict as model was a 500"),
    ("POST", "/v1/runs", {"json": {"prompt": "hi", "options": {"max_turns": 2.0}}}, 202, None,
     "2.0 is a JSON integer: was refused"),
    ("GET", "/v1/sessions/0/events", {"headers": {"Last-Event-ID": "18446744073709551616"}}, 400,
     "invalid_cursor", "past uint64: was a 503 with JetStream's 'Malformed Request'"),
    ("GET", "/v1/sessions/0/events", {"params": {"from": "007"}}, 400, "invalid_cursor",
     "never issued (format_cursor writes no leading zero): the schema says so"),
    ("GET", "/v1/sessions/0/events", {"params": {"types": ",".join(["text.delta"] * 70)}}, 200,
     None, "repeats counted against the 64 patterns"),
    ("OPTIONS", "/ds/v1/stream/0", {}, 405, "method_not_allowed",
     "Allow: HEAD, one route's methods (a path with one route per method)"),
    # found by reading (the twin of the Last-Event-ID one)
    ("GET", "/ds/v1/sessions/0", {"params": {"offset": str(2**64)}}, 400, "invalid_cursor",
     "past uint64: was a 503 with JetStream's 'Malformed Request'"),
    # found by the Durable Streams conformance suite
    ("GET", "/ds/v1/stream/found_never_made", {}, 404, "not_found",
     "errors without X-Content-Type-Options: nosniff"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code", "finding"), FOUND)
def test_what_schemathesis_found_stays_fixed(
    live_gateway: GatewayProcess, method: str, path: str, kwargs: dict[str, Any], status: int,
    code: str | None, finding: str,
) -> None:  # fmt: skip
    request = {**kwargs, "headers": {**auth(("read", "run")), **kwargs.get("headers", {})}}
    with (
        httpx.Client(base_url=live_gateway.url, timeout=30) as http,
        http.stream(method, path, **request) as response,
    ):
        if response.status_code != 200:
            response.read()
    assert response.status_code == status, (finding, response.text)
    if code is not None:
        assert response.json()["error"]["code"] == code, (finding, response.text)
    if status == 405:
        assert "POST" in response.headers["allow"], finding
    if status >= 400:
        assert response.headers["x-content-type-options"] == "nosniff", finding


def test_metrics_say_their_content_type(live_gateway: GatewayProcess) -> None:
    response = httpx.get(live_gateway.url + "/metrics", timeout=30)
    declared = create_app(_SETTINGS).openapi()["paths"]["/metrics"]["get"]["responses"]["200"]
    assert response.headers["content-type"].split(";")[0] in declared["content"]


@pytest.mark.timeout(900)
def test_schemathesis_all_checks_find_nothing(live_gateway: GatewayProcess, tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "--no-color",
        "run", f"{live_gateway.url}/openapi.json", "--checks", "all",
        "--header", f"Authorization: Bearer {token(('read', 'run'), ttl_s=900)}",
        "--seed", os.environ.get("AGENTCAST_SCHEMA_SEED", "14"),
        "--report", "junit", "--report-dir", str(tmp_path / "report"),
    ]  # fmt: skip
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.schema.hooks", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        command, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=840
    )
    report = "\n".join(line[:400] for line in (result.stdout + result.stderr).splitlines())
    assert result.returncode == 0, report[-20000:]
    assert "No issues found" in report or " passed" in report, report[-4000:]


def test_every_operation_declares_its_answers() -> None:
    """What schemathesis cannot see without hitting it: the declarations a new route must make."""
    app = create_app(
        Settings.load({"nats_url": "nats://unused:4222", "jwt_secret": SECRET}, environ={})
    )
    schema = app.openapi()
    assert (
        "HTTPValidationError" not in schema["components"]["schemas"]
    )  # our 422 body, not FastAPI's
    wrong = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            name, answers = f"{method.upper()} {path}", operation["responses"]
            if "413" not in answers:
                wrong.append(f"{name}: no 413 (use openapi.answers)")
            if operation.get("security") and not {"401", "403"} <= set(answers):
                wrong.append(f"{name}: takes a token but does not declare 401 and 403")
            streams = "text/event-stream" in answers.get("200", {}).get("content", {})
            if streams and "streams" not in operation.get("tags", []):
                wrong.append(
                    f"{name}: an SSE stream not tagged `streams` (schemathesis bounds those)"
                )
    assert not wrong, "\n".join(wrong)
