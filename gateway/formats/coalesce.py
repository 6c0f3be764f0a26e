"""`coalesce_ms=`: consecutive text deltas of one block inside a window become one event.

Pure: parts are held while they can still grow a group and released in stream
order, so text is never reordered or lost. A group holds deltas of the same
session, run, sub-agent, type and block index whose producer timestamps lie
within the window of its first part; anything else closes it. The stream's
owner releases a group whose window has passed on the wall clock (`drain`).
"""

from __future__ import annotations

from typing import Final

from gateway.formats.items import Item, merge

MERGEABLE: Final = frozenset({"text.delta", "thinking.delta"})

_Key = tuple[str, int, str | None, str, object]


class Coalescer:
    __slots__ = ("_held", "_key", "window_ns")

    def __init__(self, window_ms: int) -> None:
        self.window_ns = window_ms * 1_000_000
        self._held: list[Item] = []
        self._key: _Key | None = None

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def push(self, item: Item) -> list[Item]:
        """Items released by `item`'s arrival, in order (maybe none: it was held)."""
        if item.frame.type not in MERGEABLE:
            return [*self.drain(), item]
        event = item.event
        key: _Key = (event.session, event.run, event.parent_tool_use_id, event.type,
                     item.data.get("index"))  # fmt: skip
        held = self._held
        if held and key == self._key and event.ts - held[0].event.ts <= self.window_ns:
            held.append(item)
            return []
        out = self.drain()
        self._held, self._key = [item], key
        return out

    def drain(self) -> list[Item]:
        """Release the group being held, merged into one item."""
        if not self._held:
            return []
        held, self._held, self._key = self._held, [], None
        return [merge(held)]
