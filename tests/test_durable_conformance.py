"""The Durable Streams conformance suite (@durable-streams/server-conformance-tests 0.3.6,
run by vitest from tests/node) against a live gateway: its read-path groups, every test.

The suite creates and appends its own streams, so it runs against the writable
app-stream facade (/ds/v1/stream/*), which reads through the same code as sessions.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agentcast.embedded import EmbeddedNats
from tests.support.gateway import GatewayProcess, token
from tests.support.nats import role_env

NODE_DIR = Path(__file__).parent / "node"
SUITE = "durable-conformance.test.mjs"
GROUPS = (
    "Read Operations",
    "Long-Poll Operations",
    "Offset Validation and Resumability",
    "SSE Mode",
    "JSON Mode",
    "Caching and ETag",
    "HEAD Metadata",
)
EXPECTED_TESTS = 80
"""How many tests the groups hold in 0.3.6: a run that selects fewer proves nothing."""
LONG_POLL_S = 1.0
"""The gateway's long-poll; the suite's test timeout is its own long-poll (3 s) + 1 s."""

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_DIR / "node_modules").is_dir(),
    reason="needs node and `npm ci --prefix tests/node` (scripts/test runs it)",
)


def _gateway(nats_server: EmbeddedNats, tmp_path: Path, **extra: str) -> GatewayProcess:
    env = {
        **role_env(nats_server, "gateway"),
        "AGENTCAST_DURABLE_LONG_POLL_S": str(LONG_POLL_S),
        "AGENTCAST_CORS_ORIGINS": "*",  # the suite checks a CORS preflight
        **extra,
    }
    proc = GatewayProcess(nats_server.url, tmp_path / "gw", env=env)
    proc.start()
    return proc


def run_suite(
    gateway: GatewayProcess, groups: tuple[str, ...], tmp_path: Path
) -> list[dict[str, Any]]:
    """The suite's tests in `groups` that ran, from vitest's JSON report; asserts none failed."""
    report = tmp_path / "vitest.json"
    env = {
        **os.environ,
        "DS_URL": gateway.url + "/ds",
        "DS_TOKEN": token(("read", "run")),
        "DS_LONG_POLL_MS": "3000",
    }
    # A group's tests are named "<group> <test>"; "HEAD Metadata Edge Cases" is another group.
    pattern = "^(" + "|".join(groups) + ") (?!Edge Cases)"
    cmd = [str(NODE_DIR / "node_modules" / ".bin" / "vitest"), "run", SUITE, "-t", pattern,
           "--reporter=json", f"--outputFile={report}"]  # fmt: skip
    done = subprocess.run(cmd, check=False, cwd=NODE_DIR, env=env, capture_output=True, timeout=300)
    assert report.exists(), done.stderr.decode()[-3000:]
    results = [
        t for f in json.loads(report.read_text())["testResults"] for t in f["assertionResults"]
    ]
    ran = [t for t in results if t["status"] in ("passed", "failed")]
    failed = {t["fullName"]: t["failureMessages"][:1] for t in ran if t["status"] == "failed"}
    assert not failed, json.dumps(failed, indent=1)[:4000]
    assert {t["ancestorTitles"][0] for t in ran} == set(groups)
    return ran


def test_the_read_path_groups_of_the_conformance_suite_pass(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    gateway = _gateway(nats_server, tmp_path)
    try:
        ran = run_suite(gateway, GROUPS, tmp_path)
    finally:
        gateway.stop()
    assert len(ran) == EXPECTED_TESTS, sorted(t["fullName"] for t in ran)


def test_the_streaming_groups_pass_on_the_plain_path_too(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    """With the fast path off, SSE goes through ASGI `send` (gateway/output.py's plain path)."""
    gateway = _gateway(nats_server, tmp_path, AGENTCAST_GATEWAY_FASTPATH="0")
    try:
        run_suite(gateway, ("SSE Mode", "Long-Poll Operations"), tmp_path)
    finally:
        gateway.stop()
