"""The chaos suite's fixtures: a nats-server of each test's own, and every process it starts stopped.

Faults are real: kill -9, SIGSTOP/SIGCONT, a full filesystem. Each test owns
its processes and its server (tmp_path, free ports), so the suite runs beside
any other test file. The long soak runs only with AGENTCAST_SOAK=1 (or `-m soak`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.chaos import Stoppable


@pytest.fixture
def procs() -> Iterator[list[Stoppable]]:
    """Processes a test started: each is stopped (SIGTERM, then SIGKILL) at the end, by PID."""
    started: list[Stoppable] = []
    try:
        yield started
    finally:
        if started:  # together: each may take its drain bound to stop
            with ThreadPoolExecutor(len(started)) as pool:
                list(pool.map(_stop, started))


def _stop(proc: Stoppable) -> None:
    try:
        proc.stop()
    finally:
        proc.kill()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("AGENTCAST_SOAK") == "1" or "soak" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(
        reason="the long soak is opt-in: AGENTCAST_SOAK=1 (tests/chaos/README.md)"
    )
    for item in items:
        if item.get_closest_marker("soak"):
            item.add_marker(skip)
