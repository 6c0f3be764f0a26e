"""The Claude Code CLI dies with its worker: a parent-death signal and a process group.

claude_agent_sdk starts the CLI as a child of the worker. A worker killed
with -9 cannot stop it, and an orphaned CLI keeps running (with a real API
key, keeps spending). So the SDK's `cli_path` names a wrapper script
(`guarded_cli_path()`) that runs this file, with the standard library only,
as a small guard between the worker and the real CLI:

- the kernel sends the guard SIGTERM when the worker dies
  (prctl PR_SET_PDEATHSIG), and the CLI SIGKILL when the guard dies;
- the CLI runs in a process group of its own, so the tool processes it starts
  (shells, ripgrep) are in it too; the guard is their subreaper, so the ones
  that left the group come back to it when their parent dies;
- when the CLI exits, or the guard is told to stop, it ends the group:
  SIGKILL at once when the worker died, else (the SDK's terminate) SIGTERM and
  SIGKILL after `_KILL_AFTER_S`; then every process still below it;
- the guard has a process group of its own too, so a supervisor that kills
  the dead worker's group does not kill the guard before it has cleaned up.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_KILL_AFTER_S = 2.0
_REAP_ROUNDS = 100


def guarded_cli_path() -> str | None:
    """An executable that runs the bundled CLI under the guard; None where it cannot.

    Checked at every run: a temp-dir cleaner may have removed the script since.
    """
    found = _guard_script()
    if found is None:
        return None
    path, script = found
    path.parent.mkdir(mode=0o700, exist_ok=True)
    info = path.parent.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        # Someone else's folder in a shared /tmp: never run what it holds.
        raise PermissionError(f"{path.parent} is not private to this user")
    if not path.exists():
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(script)
        partial.chmod(0o700)
        partial.replace(path)  # atomic: workers sharing a machine share the file
    return str(path)


@functools.cache
def _guard_script() -> tuple[Path, str] | None:
    if not sys.platform.startswith("linux"):
        return None
    real = _real_cli()
    if real is None:
        return None
    python, guard = shlex.quote(sys.executable), shlex.quote(str(Path(__file__).resolve()))
    script = f'#!/bin/sh\nexec {python} -S {guard} {shlex.quote(real)} "$@"\n'
    digest = hashlib.sha256(script.encode()).hexdigest()[:12]  # same content, same file
    folder = Path(tempfile.gettempdir()) / f"agentcast-{os.getuid()}"
    return folder / f"claude-guard-{digest}", script


def _real_cli() -> str | None:
    """Where the SDK itself would look: its bundled CLI, else `claude` on PATH."""
    try:
        import claude_agent_sdk
    except ImportError:
        return None
    bundled = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
    if bundled.is_file():
        return str(bundled)
    return shutil.which("claude")


# -- the guard process (runs as a script, standard library only) -----------------


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl failed")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _end_everything(cli: int) -> None:
    """The group, then whatever is still below the guard (it is their subreaper)."""
    _signal_group(cli, signal.SIGKILL)
    for _ in range(_REAP_ROUNDS):
        _reap()
        left = _children(os.getpid())
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


def main(argv: list[str]) -> int:
    real, args = argv[0], argv[1:]
    worker = os.getppid()
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != worker:  # the worker died before the guard was armed
        return 1
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    guard = os.getpid()
    cli = os.fork()
    if cli == 0:
        try:
            os.setpgid(0, 0)
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() == guard:
                os.execv(real, [real, *args])
        finally:
            os._exit(127)
    try:
        os.setpgid(cli, cli)  # also here: whichever of the two runs first
    except OSError:
        pass

    def stop(signum: int, frame: FrameType | None) -> None:
        if os.getppid() != worker:  # the worker died: nothing of the run is wanted now
            _signal_group(cli, signal.SIGKILL)
            return
        _signal_group(cli, signal.SIGTERM)
        signal.setitimer(signal.ITIMER_REAL, _KILL_AFTER_S)

    def kill(signum: int, frame: FrameType | None) -> None:
        _signal_group(cli, signal.SIGKILL)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    signal.signal(signal.SIGALRM, kill)
    while True:
        try:
            _, status = os.waitpid(cli, 0)
            break
        except ChildProcessError:
            status = 0
            break
    _end_everything(cli)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
