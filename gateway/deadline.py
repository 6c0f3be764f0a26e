"""A bound on the NATS calls one API request makes: a stalled NATS is a 503, never a hang.

nats-py's calls each have their own timeout (5 s for JetStream API calls and
KV reads, none for iterating a watcher), and a request may make several, so
a stalled server (SIGSTOP, a partition: the TCP connection stays open) kept a
request waiting for 5 to 15 s. Every API route and WebSocket op runs its NATS
calls under one deadline (`nats_timeout_s`, 1.5 s by default) and past it
answers 503 `nats_unavailable` with Retry-After (gateway/errors.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gateway.errors import unavailable


@asynccontextmanager
async def nats_deadline(seconds: float) -> AsyncIterator[None]:
    """Raise a 503 `nats_unavailable` ApiError if the block (or a NATS call in it) times out."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError as exc:  # nats-py's TimeoutError is one too
        raise unavailable(f"NATS did not answer within {seconds:g} s") from exc
