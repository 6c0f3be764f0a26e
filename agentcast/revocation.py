"""Token revocation by `jti`: a KV bucket that `agentcast token --revoke` writes and gateways watch.

An entry lives as long as the longest token the gateways accept
(`token_max_lifetime_s`): by then the token it names is refused anyway.
"""

from __future__ import annotations

import time

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from agentcast.bus import key_value
from agentcast.settings import Settings
from agentcast.subjects import REVOKED_BUCKET


async def revoked_bucket(js: JetStreamContext, settings: Settings) -> KeyValue:
    return await key_value(
        js, REVOKED_BUCKET, "revoked token ids (jti)", settings.replicas,
        ttl_s=settings.token_max_lifetime_s,
    )  # fmt: skip


async def revoke(js: JetStreamContext, settings: Settings, jti: str) -> None:
    """Revoke the token `jti` on every gateway (they end its open streams)."""
    kv = await revoked_bucket(js, settings)
    await kv.put(jti, str(int(time.time())).encode())
