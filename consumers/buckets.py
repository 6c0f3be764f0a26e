"""KV buckets the consumers own (beside the contract's `agentcast_sessions`)."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from agentcast.bus import key_value
from agentcast.subjects import EVENTS_STREAM


async def bucket(js: JetStreamContext, name: str, description: str, ttl_s: float) -> KeyValue:
    """The bucket `name`, created (history 1, file storage, keys expiring after `ttl_s`) if missing.

    A new bucket gets as many replicas as the events stream (which every role
    creates or checks first, from `settings.replicas`): what indexes the
    events is kept as safely as they are.
    """
    try:
        replicas = (await js.stream_info(EVENTS_STREAM)).config.num_replicas or 1
    except NotFoundError:
        replicas = 1
    return await key_value(js, name, description, replicas, ttl_s)
