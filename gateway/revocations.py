"""The revoked tokens, as this gateway knows them: a watch over the revocation bucket.

Every request's token is checked against the set (gateway/auth.py); a
revocation that arrives while the token has streams open ends them
(gateway/slots.py), so a revoked token keeps nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from nats.js import JetStreamContext

from agentcast.revocation import revoked_bucket
from agentcast.settings import Settings

logger = logging.getLogger(__name__)

_RETRY_S: Final = 1.0


class Revocations:
    """`jti in revocations`; `watch()` keeps it current and calls `on_revoke(jti)` for each new one."""

    def __init__(self, on_revoke: Callable[[str], object]) -> None:
        self._revoked: set[str] = set()
        self._on_revoke = on_revoke
        self.loaded = asyncio.Event()

    def __contains__(self, jti: object) -> bool:
        return jti in self._revoked

    async def watch(self, js: JetStreamContext, settings: Settings) -> None:
        """Follow the bucket until cancelled; `loaded` is set once the stored ones are in."""
        while True:
            try:
                kv = await revoked_bucket(js, settings)
                watcher = await kv.watchall(ignore_deletes=True)
                try:
                    async for entry in watcher:
                        if entry is None:  # the stored values are all in
                            self.loaded.set()
                            continue
                        if entry.key not in self._revoked:
                            self._revoked.add(entry.key)
                            if self.loaded.is_set():
                                logger.info("Token %s revoked", entry.key)
                            self._on_revoke(entry.key)
                finally:
                    await watcher.stop()  # type: ignore[no-untyped-call]
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - NATS away: watch again
                logger.warning("revocation watch failed, retrying: %r", exc)
                await asyncio.sleep(_RETRY_S)
