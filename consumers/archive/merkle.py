"""RFC 6962 Merkle trees (Certificate Transparency, section 2.1): root, inclusion path, its check (pure).

    leaf hash   = sha256(0x00 || leaf bytes)
    node hash   = sha256(0x01 || left || right)
    MTH({})     = sha256("")
    MTH(D[0:n]) = node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two < n

Leaves here are the canonical bytes of the checkpoint entries, sorted by session.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH over the leaf hashes `leaves` (already hashed with `leaf_hash`)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    level = list(leaves)
    # Pairing left to right and carrying an odd last node up unchanged builds
    # exactly the RFC's left-balanced tree, in O(n) without recursion.
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def path(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(m, D[n]) of RFC 6962 2.1.1: the sibling hashes from leaf `index` up to the root."""
    if not 0 <= index < len(leaves):
        raise IndexError(index)
    found: list[bytes] = []
    level, i = list(leaves), index
    while len(level) > 1:
        sibling = i ^ 1
        if sibling < len(level):
            found.append(level[sibling])
        paired = [node_hash(level[k], level[k + 1]) for k in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level, i = paired, i // 2
    return found


def root_from_path(leaf: bytes, index: int, size: int, siblings: Sequence[bytes]) -> bytes:
    """The root a leaf hash and its inclusion path lead to (RFC 9162 2.1.3.2's algorithm)."""
    if not 0 <= index < size:
        raise ValueError("index outside the tree")
    fn, sn, r = index, size - 1, leaf
    for p in siblings:
        if sn == 0:
            raise ValueError("path too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ValueError("path too short")
    return r
