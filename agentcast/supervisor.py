"""A small process supervisor for `agentcast up`: start roles, watch them, stop them all.

Each role runs as a child process in its own process group, logging to
`<log_dir>/<name>.log`. A child that dies is reported and restarted with a
growing delay; one that keeps dying (more than `max_restarts` within
`restart_window_s`) stops the whole system with a message naming it: never a
silent half-system. `stop()` sends SIGTERM to every group, waits, and
SIGKILLs whatever is left, so no grandchild (a worker's CLI) outlives `up`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agentcast.errors import AgentcastError

logger = logging.getLogger(__name__)


class ChildFailed(AgentcastError):
    code = "child_failed"

    def __init__(self, name: str, returncode: int | None, log: Path) -> None:
        self.name = name
        self.returncode = returncode
        self.log = log
        super().__init__(f"{name} keeps exiting (last exit code {returncode}); see {log}")


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    deaths: deque[float] = field(default_factory=deque)
    restart_at: float | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    def __init__(
        self,
        log_dir: Path,
        *,
        max_restarts: int = 3,
        restart_window_s: float = 60.0,
    ) -> None:
        self.log_dir = log_dir
        self.children: dict[str, Child] = {}
        self._max_restarts = max_restarts
        self._window = restart_window_s

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Child:
        child = self.children.get(name) or Child(name, list(argv), env)
        self.children[name] = child
        self.log_dir.mkdir(parents=True, exist_ok=True)
        child.log_path = self.log_dir / f"{name}.log"
        with child.log_path.open("ab") as log:
            child.process = subprocess.Popen(
                child.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(child.env or {})},
                start_new_session=True,
            )
        logger.debug("started %s [pid %d]", name, child.process.pid)
        return child

    def check(self) -> list[str]:
        """Restart dead children when due; returns notices for the terminal.

        Raises ChildFailed when a child died too often.
        """
        notices: list[str] = []
        now = time.monotonic()
        for child in self.children.values():
            if child.alive or child.process is None:
                continue
            if child.restart_at is None:
                code = child.process.returncode
                child.deaths.append(now)
                while child.deaths and now - child.deaths[0] > self._window:
                    child.deaths.popleft()
                assert child.log_path is not None
                if len(child.deaths) > self._max_restarts:
                    raise ChildFailed(child.name, code, child.log_path)
                delay = 0.5 * 2 ** (len(child.deaths) - 1)
                child.restart_at = now + delay
                notices.append(
                    f"{child.name} exited with code {code}; restarting in {delay:.1f}s (log: {child.log_path})"
                )
            elif now >= child.restart_at:
                child.restart_at = None
                self.start(child.name, child.argv, child.env)
                notices.append(f"{child.name} restarted [pid {child.pid}]")
        return notices

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM every child, wait, then SIGKILL whatever is left in their groups.

        Only the child itself gets SIGTERM: a worker ends its agents' CLIs on
        its own (publishing run.cancelled); a signal to the whole group would
        kill them under it and turn clean cancels into failures.
        """
        for child in reversed(list(self.children.values())):
            if child.alive:
                assert child.process is not None
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in self.children.values():
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in time: killing it", child.name)
        for child in self.children.values():
            # The group may hold grandchildren (a worker's CLI) even after the child exited.
            _signal_group(child, signal.SIGKILL)
            if child.process is not None:
                try:
                    child.process.wait(5)
                except subprocess.TimeoutExpired:
                    pass


def _signal_group(child: Child, sig: int) -> None:
    if child.process is None:
        return
    try:
        os.killpg(child.process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
