"""The Python client of an agentcast gateway: typed, self-resuming event streams, and runs."""

from agentcast.client.client import CancelReply, Client, QueuedRun
from agentcast.client.errors import (
    AuthError,
    ClientError,
    CursorExpired,
    Forbidden,
    GatewayUnreachable,
    NotFound,
    Unauthorized,
)
from agentcast.client.stream import StreamStats, event_type
from agentcast.client.sync import SyncClient

__all__ = [
    "AuthError",
    "CancelReply",
    "Client",
    "ClientError",
    "CursorExpired",
    "Forbidden",
    "GatewayUnreachable",
    "NotFound",
    "QueuedRun",
    "StreamStats",
    "SyncClient",
    "Unauthorized",
    "event_type",
]
