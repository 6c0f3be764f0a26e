"""agentcast's own frames for a stream that needs per-client work (coalescing)."""

from __future__ import annotations

from collections.abc import Hashable

from gateway.formats.items import Item
from gateway.frames import sse_event


class NativeTranslator:
    """`id: cursor`, `event: type`, `data: envelope`: the stored bytes unless merged."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False

    def feed(self, item: Item, *, quiet: bool) -> list[bytes]:
        if quiet:
            return []
        return [sse_event(item.cursor, item.frame.type, item.payload())]

    def prelude(self, cursor: str) -> list[bytes]:
        return []

    def lineage(self) -> Hashable | None:
        return None  # only used with coalescing, whose groups depend on timing
