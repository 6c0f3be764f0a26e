"""Handing memory back once a crowd has gone (a reconnect storm's thousands of connections).

CPython never shrinks a set's table on removal: a set that once held 2,500
connections keeps its 128 KiB table with 10 left, in every process, until it
grows again. `compact_set` rebuilds it in place (its identity is shared: uvicorn
hands one set to every connection) once it is mostly empty.
"""

from __future__ import annotations

import sys
from typing import Any, Final

_BIG_TABLE_BYTES: Final = 32 * 1024
_SPARSE: Final = 64
"""Rebuilt only when the table has room for this many times the entries left."""


def compact_set(items: set[Any]) -> None:
    """Shrink `items`' table in place when it is big and nearly empty; cheap otherwise."""
    size = sys.getsizeof(items)
    if size > _BIG_TABLE_BYTES and len(items) * 16 * _SPARSE < size:
        kept = list(items)
        items.clear()
        items.update(kept)
