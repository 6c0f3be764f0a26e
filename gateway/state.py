"""What the lifespan owns, typed: made at startup, closed at shutdown, handed to routes.

The lifespan (gateway/app.py) yields `{"gateway": GatewayState}` as its
state (Starlette copies it into every request's scope); routes take it with
the `State` dependency (gateway/deps.py) and never import the app.
"""

from __future__ import annotations

import logging

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from prometheus_client import CollectorRegistry
from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send

from agentcast.errors import TooManyStreams
from agentcast.replicas import ReplicasCollector
from agentcast.settings import Settings
from gateway.auth import Authenticator
from gateway.durable.appstreams import AppStreams
from gateway.errors import error_response, from_agentcast_error
from gateway.hub import Hub
from gateway.limits import RunLimiter
from gateway.progress_feed import ProgressFeed
from gateway.replay import DirectReader
from gateway.revocations import Revocations
from gateway.slots import Slot, StreamSlots
from gateway.telemetry import Stats, registry

logger = logging.getLogger(__name__)

STATE_KEY = "gateway"


class GatewayState:
    """The gateway's resources: one NATS connection and everything built on it."""

    def __init__(
        self,
        settings: Settings,
        nc: Client,
        hub: Hub,
        reader: DirectReader,
        kv: KeyValue,
        auth: Authenticator,
        stats: Stats,
        slots: StreamSlots,
        revocations: Revocations,
    ) -> None:
        self.settings = settings
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.hub = hub
        self.reader = reader
        self.kv = kv
        self.auth = auth
        self.stats = stats
        self.slots = slots
        self.revocations = revocations
        self.run_limiter = RunLimiter(settings.runs_per_token_per_s)
        self.progress = ProgressFeed(nc)
        self.registry: CollectorRegistry = registry(
            stats, lambda: len(hub.topics), hub.subscriptions, hub.buffered
        )
        self.registry.register(ReplicasCollector())
        self.app_streams: AppStreams | None = None
        """Durable Streams application streams (gateway/durable/), opened by the lifespan."""

    async def stream_slot(
        self, jti: str, scope: Scope, receive: Receive, send: Send
    ) -> Slot | None:
        """One of the token's stream slots for an HTTP stream; None once the 429 is answered."""
        try:
            return await self.slots.acquire(jti)
        except TooManyStreams as exc:
            self.stats.hit(exc.limit)
            await error_response(from_agentcast_error(exc))(scope, receive, send)
            return None

    async def close(self) -> None:
        """Every stream told to end, subscriptions dropped (the connection is the lifespan's)."""
        await self.hub.close()
        if self.app_streams is not None:
            await self.app_streams.close()
        await self.slots.close()
        await self.progress.close()
        await self.reader.stop()


def state_of(conn: HTTPConnection) -> GatewayState:
    """The lifespan's state, from a request or WebSocket."""
    state: GatewayState = getattr(conn.state, STATE_KEY)  # set by the lifespan (gateway/app.py)
    return state
