"""Fit an event under the stream's max message size by cutting its longest strings.

A 5 MB tool result must still reach viewers and the archive as an event that
JetStream accepts: the largest string leaves of `data` are cut (with a marker
saying how much went) until the encoded envelope fits, and `truncated` is set.
"""

from __future__ import annotations

from typing import Any

import msgspec

from agentcast.codec import encode
from agentcast.events import Event

# Room left for NATS headers (Nats-Msg-Id, the expected-sequence pair) and the marker text.
HEADER_ROOM = 1024
_MAX_PASSES = 32


def fit_event(event: Event, max_msg_size: int) -> tuple[Event, bytes]:
    """Return the event (truncated if needed) and its encoded bytes, at most the limit."""
    raw = encode(event)
    limit = max_msg_size - HEADER_ROOM
    if len(raw) <= limit:
        return event, raw
    data: Any = msgspec.to_builtins(event.data)
    for _ in range(_MAX_PASSES):
        overflow = len(raw) - limit
        if overflow <= 0:
            break
        if not _cut_longest_string(data, overflow):
            data = _summary(data, len(raw))
        data["truncated"] = True
        candidate = msgspec.structs.replace(event, data=msgspec.convert(data, type(event.data)))
        raw = encode(candidate)
        event = candidate
    if len(raw) > limit:
        raise ValueError(f"event {event.id} cannot be truncated under {limit} bytes")
    return event, raw


def _string_leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[int, tuple[Any, ...]]]:
    leaves: list[tuple[int, tuple[Any, ...]]] = []
    if isinstance(value, str):
        leaves.append((len(value.encode()), path))
    elif isinstance(value, dict):
        for key, item in value.items():
            leaves.extend(_string_leaves(item, (*path, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            leaves.extend(_string_leaves(item, (*path, index)))
    return leaves


def _cut_longest_string(data: dict[str, Any], overflow: int) -> bool:
    leaves = _string_leaves(data)
    if not leaves:
        return False
    size, path = max(leaves)
    if size < 64:
        return False
    container: Any = data
    for key in path[:-1]:
        container = container[key]
    text: str = container[path[-1]]
    # JSON escaping can make the encoded string longer than its UTF-8 bytes:
    # cut by a little more than the overflow and let the caller re-measure.
    keep = max(0, size - overflow - overflow // 8 - 64)
    kept = text.encode()[:keep].decode(errors="ignore")
    container[path[-1]] = f"{kept}\n[... truncated {size - len(kept.encode())} bytes]"
    return True


def _summary(data: dict[str, Any], size: int) -> dict[str, Any]:
    """Last resort when no single string is large: keep the identifying scalars only."""
    kept: dict[str, Any] = {
        k: v
        for k, v in data.items()
        if isinstance(v, (int, float, bool)) or (isinstance(v, str) and len(v) < 256)
    }
    for key, value in data.items():
        if key not in kept:
            kept[key] = (
                f"[truncated: {size} bytes]"
                if not isinstance(value, (dict, list))
                else type(value)()
            )
    return kept
