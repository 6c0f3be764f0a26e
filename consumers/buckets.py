"""KV buckets the consumers own (beside the contract's `agentcast_sessions`)."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue


async def bucket(js: JetStreamContext, name: str, description: str, ttl_s: float) -> KeyValue:
    """The bucket `name`, created (history 1, file storage, keys expiring after `ttl_s`) if missing."""
    try:
        return await js.key_value(name)
    except (BucketNotFoundError, NotFoundError):  # which one depends on the nats-py version
        return await js.create_key_value(
            KeyValueConfig(
                bucket=name, description=description, history=1, ttl=ttl_s, storage=StorageType.FILE
            )
        )
