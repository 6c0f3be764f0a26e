"""`agentcast metrics`: per-session progress snapshots and Prometheus aggregates (consumers/progress)."""

from __future__ import annotations

import argparse

from agentcast.commands._common import add_common_args, settings_from_args, setup_logging
from agentcast.commands._role import add_partition_args


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("metrics", help="progress snapshots per session, Prometheus /metrics")
    add_common_args(p)
    p.add_argument(
        "--metrics-port", dest="metrics_port", type=int, help="port of /metrics (0: a free one)"
    )
    p.add_argument("--metrics-host", default="127.0.0.1", help="address of /metrics")
    add_partition_args(p, "metrics", "metrics processes sharing the sessions")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from agentcast.commands._role import run_consumer
    from consumers.progress.prometheus import ProgressMetrics
    from consumers.progress.service import ProgressService

    setup_logging(args)
    settings = settings_from_args(args)
    metrics = ProgressMetrics()
    metrics.serve(settings.metrics_port, args.metrics_host)
    try:
        return run_consumer(
            settings, "agentcast-metrics", lambda nc: ProgressService(settings, nc, metrics)
        )
    finally:
        metrics.close()
