"""A small process supervisor for `agentcast up`: start roles, watch them, stop them all.

Each role runs as a child process in its own process group, logging to
`<log_dir>/<name>.log`. A child that dies has its whole group killed at once
(a dead worker's Claude Code CLIs must not run on unsupervised), is reported
on the terminal with its log, and is restarted after a delay that doubles
with each quick death, up to `max_backoff_s`. One that keeps dying is
reported as such every time, and still restarted: never does one flapping
role stop the others. The gateway keeps serving viewers and the workers keep
running agents while, say, the archiver waits out a NATS outage; its work is
durable in JetStream and caught up when it is back. (`agentcast up` stops
everything only when startup itself fails, before anything serves.)
`stop()` sends SIGTERM to every child, waits, and SIGKILLs whatever is left
in their groups, so no grandchild outlives `up`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agentcast.errors import AgentcastError
from agentcast.logs import open_private_log

logger = logging.getLogger(__name__)

_FIRST_DELAY_S = 0.5
_LOG_TAIL_BYTES = 4096


class ChildFailed(AgentcastError):
    """A part of the system could not start (what makes `up` give up: nothing serves yet)."""

    code = "child_failed"

    def __init__(self, name: str, returncode: int | None, log: Path) -> None:
        self.name = name
        self.returncode = returncode
        self.log = log
        exited = f" (exit code {returncode})" if returncode is not None else ""
        super().__init__(f"{name} failed{exited}; see {log}")


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    started_at: float = 0.0
    streak: int = 0
    """Deaths in a row, each soon after its start: what the delay and the alarm count."""
    restart_at: float | None = None
    restarts: int = 0

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
        stable_s: float = 60.0,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.log_dir = log_dir
        self.children: dict[str, Child] = {}
        self._max_restarts = max_restarts
        self._stable_s = stable_s
        self._max_backoff_s = max_backoff_s

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Child:
        child = self.children.get(name) or Child(name, list(argv), env)
        self.children[name] = child
        self.log_dir.mkdir(parents=True, exist_ok=True)
        child.log_path = self.log_dir / f"{name}.log"
        with open_private_log(child.log_path) as log:
            child.process = subprocess.Popen(
                child.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(child.env or {})},
                start_new_session=True,
            )
        child.started_at = time.monotonic()
        logger.debug("started %s [pid %d]", name, child.process.pid)
        return child

    def check(self) -> list[str]:
        """Restart dead children when due; returns notices for the terminal (one per event)."""
        notices: list[str] = []
        now = time.monotonic()
        for child in self.children.values():
            if child.alive or child.process is None:
                continue
            if child.restart_at is None:
                notices.append(self._died(child, now))
            elif now >= child.restart_at:
                child.restart_at = None
                # Again: a grandchild may have forked after the first kill.
                _signal_group(child, signal.SIGKILL)
                self.start(child.name, child.argv, child.env)
                child.restarts += 1
                notices.append(f"{child.name} restarted [pid {child.pid}]")
        return notices

    def _died(self, child: Child, now: float) -> str:
        assert child.process is not None and child.log_path is not None
        # Its CLI children (a worker's agents) die with it, not after the delay.
        _signal_group(child, signal.SIGKILL)
        code = child.process.returncode
        child.streak = 1 if now - child.started_at >= self._stable_s else child.streak + 1
        delay = min(self._max_backoff_s, _FIRST_DELAY_S * 2 ** (child.streak - 1))
        child.restart_at = now + delay
        where = f"log: {child.log_path}"
        last = _last_line(child.log_path)
        if last:
            where += f"; last line: {last}"
        if child.streak > self._max_restarts:
            return (
                f"error: {child.name} keeps exiting ({child.streak} times in a row, last exit code "
                f"{code}); restarting in {delay:.1f}s, the rest keep serving ({where})"
            )
        return f"{child.name} exited with code {code}; restarting in {delay:.1f}s ({where})"

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


def _last_line(log: Path) -> str:
    """The log's last line (usually the exception that ended the child), shortened."""
    try:
        with log.open("rb") as f:
            f.seek(max(0, log.stat().st_size - _LOG_TAIL_BYTES))
            tail = f.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""
