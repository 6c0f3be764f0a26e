"""The deploy files say what each role runs, with which credentials, probes and proxy settings.

Parsed, not run: building images or starting containers needs a network this
suite does not assume. What can be checked here is what a reviewer would: the
commands are real `agentcast` roles, every role has its own NATS user, the
gateway is probed on /readyz and drained gracefully, the proxy streams.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from agentcast.cli import build_parser
from gateway.server import _SUPERVISOR_GRACE_S

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
ROLES = ("gateway", "worker", "archiver", "metrics")
NATS_USERS = ("admin", *ROLES)


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _manifests() -> dict[tuple[str, str], dict[str, Any]]:
    docs: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        if path.name == "nats-values.yaml":  # Helm values, not a manifest
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[(doc["kind"], doc["metadata"]["name"] if "metadata" in doc else path.name)] = (
                    doc
                )
    return docs


def _parses_as_agentcast(argv: list[str]) -> str:
    """The role a command line runs; fails if `agentcast` would reject it."""
    args = build_parser().parse_args(argv)
    return str(argv[0]) if hasattr(args, "func") else ""


def _flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


# -- Dockerfile ----------------------------------------------------------------------


def _dockerfile() -> dict[str, str]:
    """Each instruction's last occurrence (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out[word.upper()] = rest.strip() if word.upper() != "RUN" else out.get("RUN", "") + rest
    return out


def test_one_image_whose_command_picks_the_role() -> None:
    docker = _dockerfile()
    assert docker["FROM"] == "python:3.11-slim"
    assert "pip install ." in docker["RUN"]
    assert yaml.safe_load(docker["ENTRYPOINT"]) == ["agentcast"]
    cmd = yaml.safe_load(docker["CMD"])
    assert _parses_as_agentcast(cmd) == "gateway" and _flag(cmd, "--host") == "0.0.0.0"
    assert docker["USER"] != "root"


# -- compose ---------------------------------------------------------------------------


def test_compose_runs_a_three_node_cluster_from_the_deploy_nats_configs() -> None:
    services = _compose()["services"]
    nodes = [f"nats-{i}" for i in (1, 2, 3)]
    for i, name in enumerate(nodes, 1):
        node = services[name]
        assert node["entrypoint"] == ["nats-server"]
        assert node["command"] == ["-c", f"/etc/agentcast/nats/node-{i}.conf"]
        assert "./nats:/etc/agentcast/nats:ro" in node["volumes"]
        # Each node knows every role's password, from the environment, never a file in git.
        for user in NATS_USERS:
            assert node["environment"][f"AGENTCAST_{user.upper()}_PASSWORD"].startswith(
                f"${{AGENTCAST_{user.upper()}_PASSWORD:?"
            )
    # Every variable the mounted configs read is set for every node.
    read = set()
    for conf in (DEPLOY / "nats").glob("*.conf"):
        read |= set(re.findall(r"\$(AGENTCAST_[A-Z0-9_]+)", conf.read_text()))
    assert read, "deploy/nats/*.conf read their settings from the environment"
    for name in nodes:
        env = services[name]["environment"]
        assert read <= set(env), f"{name} lacks {sorted(read - set(env))}"
        routes = [env[f"AGENTCAST_NATS_ROUTE_{i}"] for i in (1, 2, 3)]
        assert [r.rpartition("@")[2] for r in routes] == [f"{n}:6222" for n in nodes]
        assert all("${AGENTCAST_ROUTE_PASSWORD}" in r for r in routes)


def test_compose_roles_each_connect_as_their_own_user_to_every_node() -> None:
    services = _compose()["services"]
    nodes = {f"nats-{i}" for i in (1, 2, 3)}
    passwords = set()
    by_role: dict[str, list[str]] = {}
    for name, service in services.items():
        if name in nodes or name == "proxy":
            continue
        role = _parses_as_agentcast(service["command"])
        by_role.setdefault(role, []).append(name)
        env = service["environment"]
        assert env["AGENTCAST_NATS_USER"] == role, name
        assert env["AGENTCAST_NATS_PASSWORD"].startswith(f"${{AGENTCAST_{role.upper()}_PASSWORD"), (
            name
        )
        passwords.add(env["AGENTCAST_NATS_PASSWORD"])
        servers = env["AGENTCAST_NATS_URL"].split(",")
        assert {s.removeprefix("nats://").split(":")[0] for s in servers} == nodes, name
        assert env["AGENTCAST_REPLICAS"] == "3"
        assert set(service["depends_on"]) == nodes
    assert sorted(by_role) == sorted(ROLES)
    assert len(passwords) == len(ROLES), "no two roles share credentials"
    assert len(by_role["gateway"]) == 2
    assert services["worker"]["deploy"]["replicas"] >= 2
    archiver = services["archiver"]
    assert any(v.endswith(":" + _flag(archiver["command"], "--dir")) for v in archiver["volumes"])  # type: ignore[operator]
    for name in by_role["gateway"]:
        gateway = services[name]
        assert _flag(gateway["command"], "--port") == "8000"
        assert "/readyz" in " ".join(gateway["healthcheck"]["test"])
        assert gateway["environment"]["AGENTCAST_JWT_SECRET"].startswith("${AGENTCAST_JWT_SECRET")


# -- nginx -----------------------------------------------------------------------------


def _nginx_blocks(text: str) -> list[Any]:
    """nginx.conf as nested lists: a directive is [words...], a block is [words..., [body]]."""
    tokens = shlex.split(
        re.sub(r"#.*", "", text).replace("{", " { ").replace("}", " } ").replace(";", " ; "),
        posix=True,
    )
    stack: list[list[Any]] = [[]]
    words: list[str] = []
    for token in tokens:
        if token == ";":
            stack[-1].append(words)
            words = []
        elif token == "{":
            block: list[Any] = []
            stack[-1].append([*words, block])
            stack.append(block)
            words = []
        elif token == "}":
            stack.pop()
        else:
            words.append(token)
    return stack[0]


def _find(body: list[Any], *head: str) -> list[Any]:
    for item in body:
        if item[: len(head)] == list(head) and isinstance(item[-1], list):
            return item[-1]  # type: ignore[no-any-return]
    raise AssertionError(f"no block {head}")


def _directives(body: list[Any], name: str) -> list[list[str]]:
    return [
        item[1:] for item in body if item and item[0] == name and not isinstance(item[-1], list)
    ]


def _seconds(value: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return int(value[:-1]) * units[value[-1]] if value[-1] in units else int(value)


def test_the_proxy_streams_sse_and_upgrades_websockets_to_both_gateways() -> None:
    http = _find(_nginx_blocks((DEPLOY / "nginx.conf").read_text()), "http")
    upstream = _find(http, "upstream", "agentcast_gateways")
    servers = {d[0] for d in _directives(upstream, "server")}
    gateways = {
        n for n, s in _compose()["services"].items() if s.get("command", [""])[0] == "gateway"
    }
    assert servers == {f"{g}:8000" for g in gateways}
    server = _find(http, "server")
    assert _directives(server, "listen") == [["8080"]]
    assert "8080" in _compose()["services"]["proxy"]["ports"][0]
    ws = _find(server, "location", "/v1/ws")
    sse = _find(server, "location", "/")
    for location in (ws, sse):
        assert _directives(location, "proxy_pass") == [["http://agentcast_gateways"]]
        assert _directives(location, "proxy_http_version") == [["1.1"]]
        assert _directives(location, "proxy_buffering") == [["off"]]
        # Far above the 15 s heartbeat: an idle stream is never cut by the proxy.
        assert _seconds(_directives(location, "proxy_read_timeout")[0][0]) >= 3600
    headers = {d[0]: d[1] for d in _directives(ws, "proxy_set_header")}
    assert headers["Upgrade"] == "$http_upgrade"
    assert headers["Connection"] == "$connection_upgrade"
    upgrade_map = _find(http, "map", "$http_upgrade", "$connection_upgrade")
    assert ["default", "upgrade"] in upgrade_map
    assert {d[0]: d[1] for d in _directives(sse, "proxy_set_header")}["Connection"] == ""


# -- Kubernetes ------------------------------------------------------------------------


def _container(doc: dict[str, Any]) -> dict[str, Any]:
    containers = doc["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]  # type: ignore[no-any-return]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_k8s_runs_every_role_with_its_own_secret_credentials() -> None:
    docs = _manifests()
    config = docs[("ConfigMap", "agentcast")]["data"]
    assert len(config["AGENTCAST_NATS_URL"].split(",")) == 3 and config["AGENTCAST_REPLICAS"] == "3"
    secret_keys = set(docs[("Secret", "agentcast")]["stringData"])
    kinds = {
        "gateway": "Deployment",
        "worker": "Deployment",
        "metrics": "Deployment",
        "archiver": "StatefulSet",
    }
    for role, kind in kinds.items():
        doc = docs[(kind, f"agentcast-{role}")]
        container = _container(doc)
        assert _parses_as_agentcast(container["args"]) == role
        assert {"configMapRef": {"name": "agentcast"}} in container["envFrom"]
        env = _env(container)
        assert env["AGENTCAST_NATS_USER"] == role
        ref = env["AGENTCAST_NATS_PASSWORD"]["secretKeyRef"]
        assert ref == {"name": "agentcast", "key": f"{role}-password"}
        assert ref["key"] in secret_keys
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert docs[("Deployment", "agentcast-metrics")]["spec"]["replicas"] == 1
    listed = set(docs[("Kustomization", "kustomization.yaml")]["resources"])
    on_disk = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")}
    assert listed == on_disk - {"kustomization.yaml", "nats-values.yaml", "secret.example.yaml"}


def test_the_gateway_is_probed_on_readyz_drained_on_stop_and_kept_available() -> None:
    docs = _manifests()
    deployment = docs[("Deployment", "agentcast-gateway")]
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    args = container["args"]
    assert _flag(args, "--host") == "0.0.0.0"
    port = int(_flag(args, "--port") or 0)
    assert {"name": "http", "containerPort": port} in container["ports"]
    ready = container["readinessProbe"]["httpGet"]
    assert ready["path"] == "/readyz" and ready["port"] in ("http", port)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert _env(container)["AGENTCAST_JWT_SECRET"]["secretKeyRef"]["key"] == "jwt-secret"
    # preStop waits for the endpoints to drop the pod; then SIGTERM tells clients to reconnect.
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > int(pre_stop[1]) + _SUPERVISOR_GRACE_S
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    pdb = docs[("PodDisruptionBudget", "agentcast-gateway")]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert (
        pdb["spec"]["minAvailable"] >= 1
        and deployment["spec"]["replicas"] > pdb["spec"]["minAvailable"]
    )
    service = docs[("Service", "agentcast-gateway")]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    notes = docs[("Ingress", "agentcast-gateway")]["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(notes["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600


def test_the_archiver_keeps_its_archive_on_a_volume_of_its_own() -> None:
    statefulset = _manifests()[("StatefulSet", "agentcast-archiver")]
    container = _container(statefulset)
    archive = _flag(container["args"], "--dir")
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    claims = {c["metadata"]["name"] for c in statefulset["spec"]["volumeClaimTemplates"]}
    assert mounts[archive] in claims  # type: ignore[index]
    env = _env(container)
    assert env["AGENTCAST_ARCHIVE_PARTITIONS"] == str(statefulset["spec"]["replicas"])
    assert "pod-index" in env["AGENTCAST_ARCHIVE_PARTITION"]["fieldRef"]["fieldPath"]


def test_nats_helm_values_make_a_three_replica_jetstream_cluster_with_the_role_passwords() -> None:
    values = yaml.safe_load((DEPLOY / "k8s" / "nats-values.yaml").read_text())
    config = values["config"]
    assert config["cluster"]["enabled"] is True and config["cluster"]["replicas"] == 3
    assert config["jetstream"]["enabled"] is True
    store = config["jetstream"]["fileStore"]
    assert store["enabled"] is True and store["pvc"]["enabled"] is True
    assert config["merge"]["00$include"] == "accounts.conf"
    for user in NATS_USERS:
        ref = values["container"]["env"][f"AGENTCAST_{user.upper()}_PASSWORD"]["valueFrom"]
        assert ref["secretKeyRef"] == {"name": "agentcast", "key": f"{user}-password"}
    # The roles' server list names the chart's pods (release `nats`).
    urls = _manifests()[("ConfigMap", "agentcast")]["data"]["AGENTCAST_NATS_URL"].split(",")
    assert urls == [f"nats://nats-{i}.nats-headless:4222" for i in range(3)]


# -- systemd ---------------------------------------------------------------------------


def test_systemd_units_never_bind_every_interface_unasked() -> None:
    for unit in (DEPLOY / "systemd").glob("agentcast-*.service"):
        text = unit.read_text()
        exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
        assert "0.0.0.0" not in exec_start, unit.name
        role = unit.stem.removeprefix("agentcast-")
        assert f"Environment=AGENTCAST_NATS_USER={role}" in text
        assert f"EnvironmentFile=-/etc/agentcast/{role}.env" in text
