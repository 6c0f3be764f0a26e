"""Durable Streams (JSON mode) over agentcast: sessions read-only, application streams writable."""

from gateway.durable.routes import router

EXPOSED_HEADERS = (
    "Stream-Next-Offset", "Stream-Cursor", "Stream-Up-To-Date", "Stream-Closed", "ETag",
    "Location", "Stream-SSE-Data-Encoding",
)  # fmt: skip
"""Response headers a browser client must be able to read (CORS `expose_headers`)."""

__all__ = ["EXPOSED_HEADERS", "router"]
