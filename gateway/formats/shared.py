"""Live translation once per event per format, shared by the clients of a session.

A translator's output for an event depends on what it has read before. Two
translators with the same `lineage()` that have read the same events are in
the same state (gateway/formats/items.py), so once a client's translator has
read up to the newest live event of its session, it can hand over to a
`Shared` translator of that lineage: the first of its clients to meet the next
live event translates it, the others take the same bytes. The registry holds
them weakly: a Shared lives as long as some client stream follows it.

A client joins just before translating a live event itself, if the Shared
has read exactly what it has (or that event too); with none of its lineage at
least as far, its own translator becomes the Shared. A follower only asks for the event the others just got (the hub dispatches
each live frame to every subscription of a topic in turn), so a few recent
outputs suffice; a follower that asks for something older has fallen out of
step and is told so (`None`), and its stream ends for an exact resume.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Hashable
from typing import Final

from gateway.formats.items import Item, Translator
from gateway.frames import Frame

_RECENT: Final = 256


class Shared:
    __slots__ = ("__weakref__", "_recent", "key", "last_seq", "translated", "translator")

    def __init__(self, key: Hashable, translator: Translator, last_seq: int) -> None:
        self.key = key
        self.translator = translator
        self.last_seq = last_seq
        self.translated = 0
        """Events this translator translated (once each, for all its followers)."""
        self._recent: OrderedDict[int, list[bytes]] = OrderedDict()

    def messages(self, frame: Frame) -> list[bytes] | None:
        """The SSE messages of a live frame, translated by the first follower to ask."""
        if frame.seq > self.last_seq:
            out = self.translator.feed(Item(frame), quiet=False)
            self.translated += 1
            self.last_seq = frame.seq
            self._recent[frame.seq] = out
            if len(self._recent) > _RECENT:
                self._recent.popitem(last=False)
            return out
        return self._recent.get(frame.seq)


_registry: weakref.WeakValueDictionary[Hashable, Shared] = weakref.WeakValueDictionary()


def follow(translator: Translator, last_seq: int, seq: int) -> Shared | None:
    """The Shared translator for `translator` (which has read up to `last_seq`) to follow
    from live frame `seq` on: one of its lineage that has read just as far (or `seq` too);
    else, when none is at least as far, `translator` itself becomes the shared one."""
    key = translator.lineage()
    if key is None:
        return None
    shared = _registry.get(key)
    if shared is not None and shared.last_seq in (last_seq, seq):
        return shared
    if shared is None or shared.last_seq < last_seq:  # none, or its followers fell behind
        shared = _registry[key] = Shared(key, translator, last_seq)
        return shared
    return None
