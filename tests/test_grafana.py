"""deploy/grafana/agentcast.json queries only metrics that the real /metrics endpoints export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
from nats.js import JetStreamContext

from agentcast.embedded import free_port
from agentcast.settings import Settings
from tests.support.events import build_events, publish_events, simple_run, unique_session
from tests.support.gateway import GatewayProcess
from tests.support.roles import Role, next_stream_seq, unique_name, wait_until

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "agentcast.json"
_METRIC = re.compile(r"\bagentcast_[a-z0-9_]+")
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
}


def exported(text: str) -> set[str]:
    """Every series name an exposition offers: its samples, and those its TYPE lines promise."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ", 3)
            names.add(family)
            names |= {family + suffix for suffix in _SUFFIXES.get(kind, ())}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


async def test_every_dashboard_query_names_an_exported_metric(
    gateway: GatewayProcess, js: JetStreamContext, settings: Settings, tmp_path: Path
) -> None:
    assert settings.nats_url
    port = free_port()
    role = Role(
        "metrics",
        [
            "--nats",
            settings.nats_url,
            "--data",
            str(tmp_path / "data"),
            "--metrics-port",
            str(port),
        ],
        {
            "AGENTCAST_METRICS_CONSUMER": unique_name("graf"),
            "AGENTCAST_CONSUMER_START_SEQ": str(await next_stream_seq(js)),
        },
        tmp_path / "metrics.log",
        "Metrics ready",
    )
    role.start()
    try:
        await publish_events(js, build_events(unique_session("graf"), simple_run()))
        scrape = ""

        def consumed() -> bool:
            nonlocal scrape
            scrape = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            return 'agentcast_runs_ended_total{outcome="completed"}' in scrape

        await wait_until(consumed, 30, "the metrics consumer to count the run")
    finally:
        role.stop()
    async with httpx.AsyncClient(timeout=5) as http:
        gateway_scrape = (await http.get(gateway.url + "/metrics")).text
    names = exported(scrape) | exported(gateway_scrape)

    used = {name for expr in queries() for name in _METRIC.findall(expr)}
    assert used, "the dashboard queries nothing"
    assert used <= names, f"not exported: {sorted(used - names)}"
    text = " ".join(queries())
    for topic in (
        "agentcast_sessions", "agentcast_events_total", "agentcast_tool_calls_total",
        "agentcast_ttft_seconds_bucket", "agentcast_run_duration_seconds_bucket",
        "agentcast_tokens_total", "agentcast_cost_usd_total",
        "agentcast_gateway_lagged_disconnects_total",
    ):  # fmt: skip
        assert topic in text, f"no panel shows {topic}"


def test_the_dashboard_is_importable_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "agentcast" and dashboard["panels"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
