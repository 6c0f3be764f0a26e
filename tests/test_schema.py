"""The OpenAPI schema tells the truth: schemathesis, every check, against a live gateway.

A real `agentcast gateway` on a NATS server of its own (tests/support/private_gateway.py:
the runs that schemathesis queues reach no other test's worker), a valid token, and the CLI
with `--checks all` over every phase (examples, coverage, fuzzing, stateful),
bounded by tests/schema/schemathesis.toml. A failure of any kind fails the
test, with schemathesis' report. `AGENTCAST_SCHEMA_SEED` picks another seed.

The stream holds one event of every type in session `0` (the id the coverage
phase uses): a stream that has events is read up to its first one, not for
the whole stream timeout, and event frames get checked too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentcast.settings import Settings
from gateway.app import create_app
from tests.support.gateway import SECRET, GatewayProcess, token
from tests.support.private_gateway import private_gateway
from tests.support.props import one_of_each_type

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "tests" / "schema" / "schemathesis.toml"


@pytest.fixture
def live_gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    with private_gateway(tmp_path, events=one_of_each_type("0")) as gateway:
        yield gateway


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
