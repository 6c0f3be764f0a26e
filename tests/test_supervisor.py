"""The supervisor of `agentcast up`, with real processes: restarts, backoff, process groups."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from agentcast.supervisor import Supervisor

# A child that starts a grandchild in its process group (as a worker starts Claude Code
# CLIs), writes the grandchild's pid, and waits. The grandchild ignores SIGHUP and SIGTERM:
# only a SIGKILL to the group ends it.
_PARENT = """
import signal, subprocess, sys, time
code = "import signal, time; [signal.signal(s, signal.SIG_IGN) for s in (signal.SIGHUP, signal.SIGTERM)]; time.sleep(600)"
p = subprocess.Popen([sys.executable, "-c", code])
open(sys.argv[1], "w").write(str(p.pid))
time.sleep(600)
"""


def _running(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().split(") ", 1)[1][0]
    except OSError:
        return False
    return state != "Z"


def _read_pid(path: Path) -> int:
    for _ in range(200):  # bounded: about 10 s
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"no pid in {path}")


def _check_until(sup: Supervisor, done: object, what: str) -> list[str]:
    """Call check() (as `up` does twice a second) until `done()`; returns the notices."""
    notices: list[str] = []
    for _ in range(400):  # bounded: about 20 s
        notices += sup.check()
        if done():  # type: ignore[operator]
            return notices
        time.sleep(0.05)
    raise AssertionError(f"never {what}: {notices}")


def test_a_dead_childs_group_is_killed_before_it_restarts(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "logs")
    pidfile = tmp_path / "grandchild.pid"
    child = sup.start("worker", [sys.executable, "-c", _PARENT, str(pidfile)])
    try:
        grandchild = _read_pid(pidfile)
        assert _running(grandchild) and os.getpgid(grandchild) == child.pid
        first = child.pid
        assert first is not None
        pidfile.unlink()
        os.kill(first, signal.SIGKILL)
        notices = _check_until(sup, lambda: child.alive and child.pid != first, "restarted")
        assert not _running(grandchild), "the dead worker's grandchild outlived it"
        assert any("worker exited with code -9" in n and str(child.log_path) in n for n in notices)
        assert any(n.startswith("worker restarted [pid ") for n in notices)
        assert _running(_read_pid(pidfile)), "the new worker's own grandchild runs"
    finally:
        sup.stop(5)
    assert not child.alive


def test_a_child_that_keeps_dying_is_reported_each_time_and_the_others_keep_running(
    tmp_path: Path,
) -> None:
    sup = Supervisor(tmp_path / "logs", max_restarts=2, max_backoff_s=1.0)
    steady = sup.start("gateway", [sys.executable, "-c", "import time; time.sleep(600)"])
    gateway = steady.pid
    crash = "import sys; print('boom: NATS stalled', flush=True); sys.exit(3)"
    flapping = sup.start("archiver", [sys.executable, "-c", crash])
    try:
        notices = _check_until(sup, lambda: flapping.restarts >= 6, "restarted six times")
        deaths = [n for n in notices if "archiver " in n and "restarting in" in n]
        assert len(deaths) >= 6
        # Every death names the log and its last line; after max_restarts it says it keeps exiting.
        assert all(str(flapping.log_path) in n and "boom: NATS stalled" in n for n in deaths)
        assert deaths[0].startswith("archiver exited with code 3; restarting in 0.5s")
        assert all(
            n.startswith("error: archiver keeps exiting (") and "the rest keep serving" in n
            for n in deaths[2:]
        )
        assert "restarting in 1.0s" in deaths[-1], "the delay is capped"
        assert steady.alive and steady.pid == gateway
    finally:
        sup.stop(5)
