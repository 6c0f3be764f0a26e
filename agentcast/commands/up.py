"""`agentcast up`: the whole system in one command (NATS, gateway, consumers, workers)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time

import httpx

from agentcast.bus import connect, credentials, disconnect, ensure_streams, servers
from agentcast.bus_auth import ROLES
from agentcast.commands._common import (
    data_credentials,
    fail,
    settings_from_args,
    setup_logging,
    write_nats_url,
)
from agentcast.embedded import EmbeddedNats, NatsServerError, free_port, port_in_use
from agentcast.settings import Settings
from agentcast.supervisor import ChildFailed, Supervisor
from agentcast.tokens import load_secret, mint_token

_READY_TIMEOUT_S = 60.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("up", help="run everything: NATS, gateway, archiver, metrics, workers")
    p.add_argument(
        "--demo", action="store_true", help="also run the scripted model and demo agents"
    )
    p.add_argument("--port", type=int, help="gateway port (default 8000)")
    p.add_argument("--data", dest="data_dir", help="data directory (default ./.agentcast)")
    p.add_argument(
        "--nats",
        dest="nats_url",
        help="use these NATS servers (comma-separated) instead of an embedded one",
    )
    p.add_argument(
        "--nats-port", dest="nats_port", type=int, help="embedded NATS port (default: free)"
    )
    p.add_argument("--workers", dest="concurrency", type=int, help="agents run at once (default 4)")
    p.add_argument("--demo-agents", type=int, default=4, help="demo sessions kept running")
    p.add_argument("--speed", type=float, default=1.0, help="demo model pacing (0 = no delays)")
    p.add_argument("--log-level", default="WARNING")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    setup_logging(args)
    settings = settings_from_args(args)
    if not settings.metrics_port:
        settings = settings.replace(metrics_port=free_port())
    if port_in_use(settings.port, settings.host):
        fail(f"port {settings.port} is already in use: the gateway cannot bind it (pass --port)", 1)
    if (
        not args.demo
        and not os.environ.get("ANTHROPIC_API_KEY")
        and not settings.anthropic_base_url
    ):
        print(
            "note: no ANTHROPIC_API_KEY set, so runs will fail; try `agentcast up --demo`",
            file=sys.stderr,
        )
    try:
        return asyncio.run(_up(settings, args))
    except NatsServerError as exc:
        fail(str(exc), 1)


async def _up(settings: Settings, args: argparse.Namespace) -> int:
    started = time.monotonic()
    # From the first moment: a SIGTERM during startup (a script that gives up
    # waiting) must still stop the children, which live in sessions of their own.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    data = settings.resolved_data_dir()
    data.mkdir(parents=True, exist_ok=True)
    server: EmbeddedNats | None = None
    logins: dict[str, tuple[str, str]] = {}
    if settings.nats_url is None:
        passwords = data_credentials(settings)
        server = EmbeddedNats(data / "nats", port=settings.nats_port, credentials=passwords)
        await server.start_async()
        write_nats_url(settings, server.admin_url)
        # Every child its own user; up itself (streams, demo) is the operator: admin.
        logins = {role: (role, pw) for role, pw in passwords.items()}
        settings = settings.replace(
            nats_url=server.url, nats_user="admin", nats_password=passwords["admin"]
        )
        shown = server.admin_url
    else:
        # An external server: every child uses the credentials given to up, if any.
        creds = credentials(settings)
        logins = {role: creds for role in ROLES} if creds else {}
        shown = settings.nats_url
    supervisor = Supervisor(data / "logs")
    code = 0
    try:
        nc = await connect(settings, "agentcast-up")
        await ensure_streams(nc.jetstream(), settings)
        if not stop.is_set():
            model_url = _start_children(supervisor, settings, logins, args)
            await _wait_ready(supervisor, settings, model_url, stop)
        if not stop.is_set():
            token = mint_token(
                load_secret(settings),
                scopes=["read", "run", "admin"],
                ttl_s=int(min(7 * 86400, settings.token_max_lifetime_s)),
            )
            _banner(settings, shown, token, time.monotonic() - started, args.demo)
            code = await _watch(supervisor, nc, args, stop)
        await disconnect(nc)
    except ChildFailed as exc:
        print(f"agentcast: error: {exc}; stopping everything", file=sys.stderr)
        code = 1
    finally:
        print("Stopping...", file=sys.stderr)
        supervisor.stop()
        if server is not None:
            server.stop()
        print("Stopped.", file=sys.stderr)
    return code


def _role(*argv: str) -> list[str]:
    return [sys.executable, "-m", "agentcast.cli", *argv]


def _login_env(logins: dict[str, tuple[str, str]], role: str) -> dict[str, str]:
    """A child's NATS user and password: in its environment, never in its argv (ps shows argv)."""
    if role not in logins:
        return {}
    user, password = logins[role]
    return {"AGENTCAST_NATS_USER": user, "AGENTCAST_NATS_PASSWORD": password}


def _start_children(
    supervisor: Supervisor,
    settings: Settings,
    logins: dict[str, tuple[str, str]],
    args: argparse.Namespace,
) -> str:
    data = str(settings.resolved_data_dir())
    common = ["--nats", ",".join(servers(settings)), "--data", data]
    # Ctrl+C should not wait for agents to finish: the worker cancels them after this.
    env: dict[str, str] = {"AGENTCAST_SHUTDOWN_GRACE_S": "2"}
    model_url = ""
    if args.demo:
        model_port = free_port()
        model_url = f"http://127.0.0.1:{model_port}"
        supervisor.start(
            "scripted-model",
            _role("scripted-model", "--port", str(model_port), "--speed", str(args.speed)),
        )
        env["AGENTCAST_ANTHROPIC_BASE_URL"] = model_url
        env["AGENTCAST_CLAUDE_CONFIG_DIR"] = str(settings.resolved_data_dir() / "claude")
    supervisor.start(
        "worker",
        _role("worker", *common, "--concurrency", str(settings.concurrency)),
        {**env, **_login_env(logins, "worker")},
    )
    supervisor.start(
        "archiver",
        _role("archiver", *common, "--dir", str(settings.resolved_archive_dir())),
        _login_env(logins, "archiver"),
    )
    supervisor.start(
        "metrics",
        _role("metrics", *common, "--metrics-port", str(settings.metrics_port)),
        _login_env(logins, "metrics"),
    )
    supervisor.start(
        "gateway",
        _role("gateway", *common, "--host", settings.host, "--port", str(settings.port)),
        _login_env(logins, "gateway"),
    )
    return model_url


async def _wait_ready(
    supervisor: Supervisor, settings: Settings, model_url: str, stop: asyncio.Event
) -> None:
    checks = [f"http://{settings.host}:{settings.port}/readyz"]
    if model_url:
        checks.append(f"{model_url}/_scripted/health")
    deadline = time.monotonic() + _READY_TIMEOUT_S
    async with httpx.AsyncClient(timeout=1.0) as client:
        for url in checks:
            while not stop.is_set():
                supervisor.check()
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise ChildFailed("startup", None, supervisor.log_dir)
                await asyncio.sleep(0.1)


def _banner(settings: Settings, url: str, token: str, seconds: float, demo: bool) -> None:
    base = f"http://{settings.host}:{settings.port}"
    lines = [
        f"agentcast is up in {seconds:.1f}s{' (demo: scripted agents running)' if demo else ''}",
        f"  Dashboard  {base}/?token={token}",
        f"  API        {base}/docs",
        f"  Metrics    {base}/metrics (gateway), http://127.0.0.1:{settings.metrics_port}/metrics (progress)",
        f"  NATS       {url}",
        f"  Archive    {settings.resolved_archive_dir()}",
        f"  Signed by  {_archive_public_key(settings)} (agentcast verify --key)",
        f"  Logs       {settings.resolved_data_dir() / 'logs'}",
        "Press Ctrl+C to stop.",
    ]
    print("\n".join(lines), flush=True)


def _archive_public_key(settings: Settings) -> str:
    """The archiver's checkpoint key (made now if it is the first start: the archiver loads the same)."""
    from consumers.archive import signing

    return signing.public_of(signing.load_or_create(signing.key_path(settings)))


async def _watch(
    supervisor: Supervisor, nc: object, args: argparse.Namespace, stop: asyncio.Event
) -> int:
    """Supervise until Ctrl+C or SIGTERM; show children's restarts as they happen."""
    from agentcast.demo import DemoDriver

    demo = asyncio.create_task(DemoDriver(nc, agents=args.demo_agents).run()) if args.demo else None  # type: ignore[arg-type]
    try:
        while not stop.is_set():
            for notice in supervisor.check():
                print(f"agentcast: {notice}", file=sys.stderr, flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    finally:
        if demo is not None:
            demo.cancel()
            await asyncio.gather(demo, return_exceptions=True)
    return 0
