"""Durable Streams (JSON mode) over agentcast: sessions read-only, application streams writable.

The routes are in `gateway.durable.routes` (imported by gateway/app.py, not
here: gateway/state.py imports this package's app streams).
"""
