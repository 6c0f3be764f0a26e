"""Headless Chromium for the browser tests: Debian's chromium, driven by Playwright for Python.

Needs the Debian `chromium` package and Playwright (the `test` extra); `.ci/run`
installs both. Without them the tests fail, saying what to install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
]  # fmt: skip
WAIT_MS = 30_000
"""Generous: how long anything may take to show up (nothing here is timed)."""


def playwright_factory() -> Any:
    """Playwright's async entry point, or a test failure naming what to install."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: the browser tests need Debian's chromium "
            "(apt-get install -y chromium fonts-dejavu-core; .ci/run does this)",
            pytrace=False,
        )
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail(
            "playwright is not installed: pip install -e '.[test]' (never `playwright install`: "
            "the test drives the system's chromium)",
            pytrace=False,
        )
    return async_playwright
