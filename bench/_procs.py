"""The servers a fan-out run starts (nats-server, agentcast gateway, nginx + Nchan) and /proc readings.

Every process is started here and stopped here, by its own PID (SIGTERM, then
SIGKILL after a bound); nothing else on the machine is touched. CPU and memory
are read from /proc for a process and all its descendants (gateway workers,
nginx workers).
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from agentcast.embedded import EmbeddedNats, free_port

SECRET = "bench-secret-0123456789abcdef0123456789"
NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
_TICK = os.sysconf("SC_CLK_TCK")


def raise_nofile() -> int:
    """Raise this process's open-file limit to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def loadavg() -> float:
    return os.getloadavg()[0]


def descendants(pid: int) -> list[int]:
    """`pid` and every live process below it."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(parents.get(p, []))
    return found


def cpu_s(pids: list[int]) -> float:
    """CPU seconds these processes (every thread) have run, from the scheduler's own clock.

    /proc/<pid>/stat's utime and stime are sampled at timer ticks, which misjudges
    processes that run in short bursts (a mostly idle server: runs of the same
    workload gave 19 and 51 µs per event); schedstat's run time is exact to the ns.
    """
    total = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total / 1e9


def pss_kib(pids: list[int]) -> int:
    """Proportional set size: shared pages (nginx's shared memory, forked code) counted once."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    return total


def machine_busy_s() -> float:
    """CPU seconds spent on anything but idle/iowait, all cores (from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / _TICK


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
    """Stop a process this script started, by its PID."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def wait_http(port: int, path: str = "/healthz", timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(
                    f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
                )
                if b" 200 " in sock.recv(256):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered 200 on 127.0.0.1:{port}{path} within {timeout}s")


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]

    def pids(self) -> list[int]:
        return descendants(self.proc.pid)


@contextmanager
def nats(tmp: Path) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def gateway(nats_url: str, tmp: Path, workers: int) -> Iterator[Server]:
    """`agentcast gateway --workers N` on a free loopback port, ready when /readyz says so."""
    port = free_port()
    cmd = [sys.executable, "-m", "agentcast.cli", "gateway", "--nats", nats_url,
           "--port", str(port), "--data", str(tmp), "--workers", str(workers),
           "--log-level", "WARNING"]  # fmt: skip
    # One token for every load client: the stream slots are counted, never refused.
    env = {
        "AGENTCAST_MAX_STREAMS_PER_TOKEN": "100000000",
        **os.environ,
        "AGENTCAST_JWT_SECRET": SECRET,
    }
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
    try:
        wait_http(port, "/readyz")
        # --workers N: every worker must be up, not just the first to answer.
        deadline = time.monotonic() + 30
        while len(descendants(proc.pid)) < workers + (workers > 1) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5 * workers)
        yield Server("agentcast", port, proc)
    finally:
        stop(proc)


def nchan_available() -> str | None:
    """Why Nchan cannot run here, or None when nginx and the module are installed."""
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        return "nginx is not installed (apt-get install nginx-light libnginx-mod-nchan)"
    if not NCHAN_MODULE.exists():
        return f"{NCHAN_MODULE} is missing (apt-get install libnginx-mod-nchan)"
    return None


def servers_to_run(no_nchan: bool) -> list[str]:
    """agentcast, and Nchan beside it unless `--no-nchan` or not installed (said on stderr)."""
    servers = ["agentcast"]
    if not no_nchan:
        if why_not := nchan_available():
            print(f"# Nchan skipped: {why_not}", file=sys.stderr)
        else:
            servers.append("nchan")
    return servers


_NCHAN_CONF = """\
load_module {module};
worker_processes {workers};
worker_rlimit_nofile {nofile};
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
daemon off;
events {{ worker_connections {conns}; multi_accept on; }}
http {{
  access_log off;
  keepalive_requests 1000000000;
  keepalive_timeout 600s;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location ~ ^/sub/([A-Za-z0-9_-]+)$ {{
      nchan_subscriber;
      nchan_channel_id $1;
      nchan_subscriber_first_message {first};
    }}
    location ~ ^/pub/([A-Za-z0-9_-]+)$ {{
      nchan_publisher;
      nchan_channel_id $1;
      nchan_message_buffer_length {buffer};
    }}
  }}
}}
"""


@contextmanager
def nchan(tmp: Path, workers: int, *, buffer: int = 16, first: str = "newest") -> Iterator[Server]:
    """nginx with the Nchan module on a free loopback port, from a config written into `tmp`;
    each channel keeps its last `buffer` messages, a new subscriber starts at `first`
    (`newest`: live only; `oldest`: a replay of the buffer, as bench/storm.py asks)."""
    port = free_port()
    root = tmp / "nginx"
    root.mkdir(parents=True, exist_ok=True)
    nofile = raise_nofile()
    conf = root / "nginx.conf"
    conf.write_text(_NCHAN_CONF.format(
        module=NCHAN_MODULE, workers=workers, nofile=nofile, tmp=root, port=port,
        conns=max(1024, nofile - 64), buffer=buffer, first=first,
    ))  # fmt: skip
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen(
        [nginx, "-p", str(root), "-c", str(conf), "-e", str(root / "error.log")],
        stdin=subprocess.DEVNULL,
    )
    try:
        _wait_nchan(port, proc)
        yield Server("nchan", port, proc)
    finally:
        stop(proc)


def _wait_nchan(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(b"GET /pub/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1.1 "):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("nginx did not answer")
