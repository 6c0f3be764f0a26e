"""Run the scripted model under uvicorn (blocking)."""

from __future__ import annotations

import logging

import uvicorn

from .app import build_app
from .scenario import load_scenarios

__all__ = ["serve"]

logger = logging.getLogger(__name__)


def serve(host: str, port: int, scenarios_dir: str | None, speed: float) -> None:
    """Serve the bundled scenarios (plus `scenarios_dir`) on host:port until interrupted.

    `speed` multiplies every delay: 0 streams as fast as possible, 1.0 is
    realistic, 2.0 twice as slow. Port 0 picks a free port; uvicorn's
    "Uvicorn running on http://HOST:PORT" line on stderr names it.
    """
    scenarios = load_scenarios(scenarios_dir)
    logger.info("Loaded %d scenarios: %s", len(scenarios), ", ".join(sorted(scenarios)))
    app = build_app(scenarios, speed=speed)
    # The CLI opens many short requests; per-request access lines add nothing
    # to our own one-line-per-turn log.
    # An open stream must not hold shutdown hostage: give it two seconds.
    uvicorn.run(
        app,
        host=host,
        port=port,
        access_log=False,
        log_level="info",
        timeout_graceful_shutdown=2,
    )
