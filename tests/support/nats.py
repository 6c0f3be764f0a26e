"""The test servers' users: each role's credentials, and a nats-server of a test's own."""

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


def role_env(server: EmbeddedNats, role: str) -> dict[str, str]:
    """The environment a role's process gets from `agentcast up`: its own user and password."""
    return {"AGENTCAST_NATS_USER": role, "AGENTCAST_NATS_PASSWORD": server.credentials[role]}


def role_settings(settings: Settings, server: EmbeddedNats, role: str) -> Settings:
    """`settings` as seen by `role`: the server's address, the role's own credentials."""
    return settings.replace(
        nats_url=server.url, nats_user=role, nats_password=server.credentials[role]
    )
