"""A NATS cluster on one machine, from the configs a user deploys (deploy/nats/node-*.conf).

Each node is a nats-server child (agentcast.embedded) run with one of those
files and the environment they read: free loopback ports, its own store,
routes to every node with the route user's password, the users' passwords.
Tests start it where the cluster is the point (replicas, a lost node, failover).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from agentcast.bus_auth import password_env
from agentcast.credentials import CREDENTIALS_FILE, load_or_create_credentials, new_password
from agentcast.embedded import EmbeddedNats, NatsServerError, free_ports, with_credentials

logger = logging.getLogger(__name__)


DEPLOY_NATS = Path(__file__).resolve().parents[1] / "deploy" / "nats"
"""The cluster configs a user deploys (deploy/nats/node-*.conf); the tests start those."""


class ClusterNode(EmbeddedNats):
    """One node of an EmbeddedCluster: a deploy/nats config, and the environment it reads."""

    def __init__(
        self,
        store_dir: Path,
        config: Path,
        env: Mapping[str, str],
        credentials: Mapping[str, str],
        host: str,
        ports: tuple[int, int, int],
    ) -> None:
        client_port, self.cluster_port, self.monitor_port = ports
        super().__init__(store_dir, client_port, host, credentials)
        self.config = config
        self.shared_env = dict(env)

    @property
    def name(self) -> str:
        return f"agentcast-{self.config.stem.rpartition('-')[2]}"

    def _config(self) -> tuple[Path, dict[str, str]]:
        env = {
            **self.shared_env,
            "AGENTCAST_NATS_HOST": self.host,
            "AGENTCAST_NATS_PORT": str(self.port),
            "AGENTCAST_NATS_CLUSTER_PORT": str(self.cluster_port),
            "AGENTCAST_NATS_MONITOR_PORT": str(self.monitor_port),
            "AGENTCAST_NATS_STORE_DIR": str(self.store_dir / "jetstream"),
        }
        return self.config, env

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def jsz(self) -> dict[str, Any]:
        url = f"http://{self.host}:{self.monitor_port}/jsz"
        with urllib.request.urlopen(url, timeout=2) as resp:
            found: dict[str, Any] = json.load(resp)
            return found


class EmbeddedCluster:
    """The nodes of `config_dir` (node-1.conf ...) clustered on loopback, on free ports.

    `start()` returns once the JetStream meta group has a leader that every
    running node follows, so streams with one replica per node can be created.
    """

    def __init__(
        self,
        base_dir: str | Path,
        host: str = "127.0.0.1",
        credentials: Mapping[str, str] | None = None,
        config_dir: Path = DEPLOY_NATS,
    ) -> None:
        base = Path(base_dir)
        self.credentials = dict(credentials or load_or_create_credentials(base / CREDENTIALS_FILE))
        configs = sorted(config_dir.glob("node-*.conf"))
        if not configs:
            raise NatsServerError(f"no node-*.conf in {config_dir}")
        env = {password_env(role): pw for role, pw in self.credentials.items()}
        route_password = env["AGENTCAST_ROUTE_PASSWORD"] = new_password()
        # Every node's client, route and monitor ports at once: distinct from each other.
        ports = free_ports(3 * len(configs), host)
        self.nodes = [
            ClusterNode(
                base / config.stem,
                config,
                env,
                self.credentials,
                host,
                (ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]),
            )
            for i, config in enumerate(configs)
        ]
        for i, node in enumerate(self.nodes, 1):
            env[f"AGENTCAST_NATS_ROUTE_{i}"] = with_credentials(
                f"nats-route://{host}:{node.cluster_port}", "route", route_password
            )
        for node in self.nodes:
            node.shared_env = dict(env)

    @property
    def url(self) -> str:
        """Every node's address, comma-separated (the form `--nats` takes)."""
        return ",".join(node.url for node in self.nodes)

    @property
    def admin_url(self) -> str:
        return ",".join(node.admin_url for node in self.nodes)

    def start(self, timeout: float = 30.0) -> None:
        """Start every node that is not running; on failure stop them all (none is left behind)."""
        try:
            for node in self.nodes:
                if not node.alive:
                    node.start(timeout)
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until every running node agrees on a meta leader that sees them all current."""
        deadline = time.monotonic() + timeout
        problem = "not asked yet"
        while time.monotonic() < deadline:
            problem = self._not_ready() or ""
            if not problem:
                logger.info("NATS cluster ready: %s", self.url)
                return
            time.sleep(0.1)
        raise NatsServerError(f"NATS cluster not ready after {timeout}s: {problem}")

    def _not_ready(self) -> str | None:
        live = [node for node in self.nodes if node.alive]
        leaders = set()
        for node in live:
            try:
                meta = node.jsz().get("meta_cluster") or {}
            except OSError as exc:
                return f"{node.name}: {exc!r}"
            leaders.add(meta.get("leader") or "")
            if meta.get("leader") == node.name:
                current = [r for r in meta.get("replicas") or [] if r.get("current")]
                if len(current) < len(live) - 1:
                    return f"leader {node.name} has {len(current)} current peers"
        if len(leaders) != 1 or "" in leaders:
            return f"meta leader not agreed: {sorted(leaders)}"
        if not any(node.name in leaders for node in live):
            return "the meta leader is not running"
        return None

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
