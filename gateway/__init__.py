"""The gateway: NATS JetStream events fanned out to SSE and WebSocket clients, and the HTTP API."""

from gateway.app import create_app

__all__ = ["create_app"]
