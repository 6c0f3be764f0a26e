"""A nats-server of a test's own (see the `private_nats` fixture in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass

from nats.aio.client import Client

from agentcast.embedded import EmbeddedNats
from agentcast.settings import Settings


@dataclass
class PrivateNats:
    """For tests that kill and restart the server under a running component."""

    server: EmbeddedNats
    settings: Settings
    nc: Client
