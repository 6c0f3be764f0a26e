"""What every subcommand shares: settings flags, logging, and finding NATS."""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from typing import Any, NoReturn
from urllib.parse import urlparse

from agentcast.credentials import CREDENTIALS_FILE, load_or_create_credentials
from agentcast.embedded import EmbeddedNats, write_private
from agentcast.logs import redact_handlers
from agentcast.settings import Settings

_NATS_URL_FILE = "nats.url"


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Flags every role takes; each maps onto a Settings field."""
    parser.add_argument(
        "--nats",
        dest="nats_url",
        help="NATS servers, comma-separated (default: the embedded server of the data dir)",
    )
    parser.add_argument("--data", dest="data_dir", help="data directory (default ./.agentcast)")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING...")


def add_client_args(parser: argparse.ArgumentParser) -> None:
    """Flags of commands that talk to a gateway."""
    defaults = Settings.load()  # AGENTCAST_GATEWAY, AGENTCAST_TOKEN
    parser.add_argument(
        "--gateway",
        default=defaults.gateway,
        help=f"gateway URL (default $AGENTCAST_GATEWAY or {Settings().gateway})",
    )
    parser.add_argument(
        "--token",
        default=defaults.token or None,
        help="bearer token (default $AGENTCAST_TOKEN)",
    )
    parser.add_argument(
        "--data", dest="data_dir", help="data directory whose secret mints a local token"
    )
    parser.add_argument("--log-level", default="WARNING")


def gateway_token(args: argparse.Namespace, scopes: list[str]) -> str:
    """--token, else a short-lived token minted from the local data directory's secret."""
    from agentcast.tokens import SECRET_FILE, load_secret, mint_token

    if args.token:
        return str(args.token)
    settings = settings_from_args(args)
    if not settings.jwt_secret and not (settings.resolved_data_dir() / SECRET_FILE).exists():
        fail(
            "no token: pass --token (or set AGENTCAST_TOKEN), or run next to `agentcast up --data DIR`"
        )
    return mint_token(load_secret(settings), scopes=scopes, ttl_s=3600)


def settings_from_args(args: argparse.Namespace, **extra: Any) -> Settings:
    """Settings from AGENTCAST_* overridden by every flag named like a Settings field."""
    overrides = {k: v for k, v in vars(args).items() if k in Settings.__struct_fields__}
    overrides.update(extra)
    try:
        return Settings.load(overrides)
    except ValueError as exc:
        fail(str(exc))


def setup_logging(args: argparse.Namespace) -> None:
    level = getattr(args, "log_level", "INFO")
    logging.basicConfig(
        level=level.upper() if isinstance(level, str) else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    redact_handlers()


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a CLI error and exit non-zero."""
    print(f"agentcast: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _reachable(url: str, timeout: float = 0.5) -> bool:
    parsed = urlparse(url.split(",", 1)[0].strip())
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or 4222), timeout
        ):
            return True
    except OSError:
        return False


def data_credentials(settings: Settings) -> dict[str, str]:
    """The NATS users' passwords of the data directory, generated at first use (mode 0600)."""
    return load_or_create_credentials(settings.resolved_data_dir() / CREDENTIALS_FILE)


def resolve_nats(settings: Settings, *, start: bool = True) -> tuple[str, EmbeddedNats | None]:
    """The NATS URL to use, starting an embedded server when none is given.

    With no `--nats`, a role joins the embedded server that `agentcast up`
    (or an earlier role) started in the data directory, as the admin user
    whose URL is in `<data>/nats.url`; if none is running, it starts one there
    itself (and owns it: the caller must stop it).
    """
    if settings.nats_url:
        return settings.nats_url, None
    data = settings.resolved_data_dir()
    url_file = data / _NATS_URL_FILE
    if url_file.exists():
        url = url_file.read_text().strip()
        if url and _reachable(url):
            return url, None
    if not start:
        fail(f"no NATS server: pass --nats URL or start `agentcast up --data {data}`")
    server = EmbeddedNats(
        data / "nats", port=settings.nats_port, credentials=data_credentials(settings)
    )
    server.start()
    write_nats_url(settings, server.admin_url)
    return server.admin_url, server


def write_nats_url(settings: Settings, url: str) -> None:
    """Tell later roles and client commands which embedded server to join, and as whom.

    The URL carries the admin password: the file is the owner's only (0600).
    """
    write_private(settings.resolved_data_dir() / _NATS_URL_FILE, url + "\n")
