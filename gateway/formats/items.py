"""What a format translator reads: a stored Frame, its envelope decoded on demand, maybe merged."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Final, Protocol

import msgspec

from agentcast.codec import decode_loose, encode
from agentcast.events import AnyEvent
from gateway.frames import Frame

MESSAGE_END: Final = b"\n\n"


class Item:
    """One event as a translator sees it: a frame, or several text deltas merged into one.

    The cursor of a merged item is its last part's, so resuming after it is exact.
    """

    __slots__ = ("_event", "frame", "merged")

    def __init__(self, frame: Frame, event: AnyEvent | None = None, *, merged: int = 1) -> None:
        self.frame = frame
        self._event = event
        self.merged = merged
        """How many stored events this item stands for (1 unless coalesced)."""

    @property
    def event(self) -> AnyEvent:
        if self._event is None:
            self._event = decode_loose(self.frame.payload)
        return self._event

    @property
    def cursor(self) -> str:
        return self.frame.cursor

    @property
    def seq(self) -> int:
        return self.frame.seq

    @property
    def data(self) -> dict[str, Any]:
        data = self.event.data
        return data if isinstance(data, dict) else {}

    def payload(self) -> bytes:
        """The envelope's JSON: the stored bytes, or the merged envelope re-encoded."""
        return self.frame.payload if self._event is None or self.merged == 1 else encode(self.event)


def merge(parts: list[Item]) -> Item:
    """Consecutive text deltas of one block as one: the texts joined, the last part's envelope."""
    if len(parts) == 1:
        return parts[0]
    last = parts[-1]
    text = "".join(str(p.data.get("text", "")) for p in parts)
    event = msgspec.structs.replace(last.event, data={**last.data, "text": text})
    return Item(last.frame, event, merged=sum(p.merged for p in parts))


def sse_data(cursor: str, body: bytes) -> bytes:
    """An SSE message of one JSON line (no `event:`: AG-UI and AI SDK clients read only data)."""
    return b"id: " + cursor.encode() + b"\ndata: " + body + MESSAGE_END


class Translator(Protocol):
    """Agentcast events in, one format's SSE messages out; one per client stream."""

    done: bool
    """The format's stream is complete (AI SDK: after `[DONE]`); later events are dropped."""

    def feed(self, item: Item, *, quiet: bool) -> list[bytes]:
        """The SSE messages for `item`; with `quiet` only the state moves (replay before the
        client's cursor, so a mid-run join knows what is open)."""

    def prelude(self, cursor: str) -> list[bytes]:
        """What a client joining at `cursor` needs before the events after it."""

    def lineage(self) -> Hashable | None:
        """A key such that two translators with the same key that have read the same events
        write the same bytes for every later event (gateway/formats/shared.py); None when
        this one's output depends on where its client joined."""
