"""A local Anthropic Messages API that plays scenario files, for offline agent runs."""

from .app import build_app
from .scenario import Scenario, load_scenarios
from .server import serve

__all__ = ["Scenario", "build_app", "load_scenarios", "serve"]
