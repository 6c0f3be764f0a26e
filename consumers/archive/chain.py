"""The hash chain: canonical bytes of a record, line framing, and linking (pure).

A record is a JSON object: an event (the envelope plus `cursor`), a seal
(`{"seal": {...}}`) or a gap (`{"gap": {...}}`). Its canonical bytes are the
object encoded as JSON with keys sorted by code point at every level, no
whitespace, UTF-8 (non-ASCII characters unescaped). A line is those bytes
with the member `"hash":"<hex>"` appended before the closing brace:

    canonical = {"cursor":"7","data":{...},...,"v":1}
    line      = {"cursor":"7","data":{...},...,"v":1,"hash":"<64 hex>"}\\n
    hash_n    = sha256(hash_{n-1} as ASCII hex + canonical_n), hash_0 = ""

so a verifier recovers the canonical bytes by cutting the fixed-size hash
member off the line, with no JSON re-encoding (consumers/README.md).
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

import msgspec

from agentcast.codec import json_decoder, sorted_encoder

GENESIS: Final = ""
"""The `previous hash` of a file's first line."""

_HASH_KEY: Final = b',"hash":"'
_HASH_HEX_LEN: Final = 64
# `,"hash":"` + 64 hex digits + `"}`: the tail every line ends with.
_TAIL_LEN: Final = len(_HASH_KEY) + _HASH_HEX_LEN + 2
_HEX: Final = frozenset(b"0123456789abcdef")

RESERVED_KEYS: Final = ("cursor", "hash")
"""Keys the archive owns on each line; an envelope may not carry them."""

_sorted_encoder: Final = sorted_encoder
_decoder: Final = json_decoder


class MalformedLine(ValueError):
    """A line that is not `canonical JSON + hash member`."""


def canonical(record: dict[str, Any]) -> bytes:
    """The canonical bytes of a record (sorted keys, compact, UTF-8)."""
    return _sorted_encoder.encode(record)


def link(prev_hash: str, canonical_bytes: bytes) -> str:
    """The hash of a line: sha256 over the previous hash (hex, ASCII) and its canonical bytes."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_bytes).hexdigest()


def frame(canonical_bytes: bytes, digest: str) -> bytes:
    """The archive line for a record's canonical bytes and its hash."""
    return b"".join((canonical_bytes[:-1], _HASH_KEY, digest.encode("ascii"), b'"}\n'))


def split(line: bytes) -> tuple[bytes, str]:
    """(canonical bytes, hash) of one line, with or without its newline."""
    if line.endswith(b"\n"):
        line = line[:-1]
    if (
        len(line) < _TAIL_LEN + 2
        or line[-_TAIL_LEN : -_TAIL_LEN + len(_HASH_KEY)] != _HASH_KEY
        or not line.endswith(b'"}')
    ):
        raise MalformedLine("no hash member at the end of the line")
    digest = line[-_HASH_HEX_LEN - 2 : -2]
    if not _HEX.issuperset(digest):
        raise MalformedLine("the hash is not 64 lowercase hex digits")
    return line[:-_TAIL_LEN] + b"}", digest.decode("ascii")


def parse(canonical_bytes: bytes) -> dict[str, Any]:
    """The record a line's canonical bytes hold; raises MalformedLine."""
    try:
        record = _decoder.decode(canonical_bytes)
    except msgspec.DecodeError as exc:
        raise MalformedLine(f"not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise MalformedLine("not a JSON object")
    return record


def seal_record(session: str, count: int, last_seq: int, last_hash: str) -> dict[str, Any]:
    """The record that closes a chain: how many events precede it and the hash they end on."""
    return {
        "seal": {"session": session, "count": count, "last_seq": last_seq, "last_hash": last_hash}
    }


def gap_record(session: str, after_seq: int, next_seq: int) -> dict[str, Any]:
    """The record of seqs that never arrived (after_seq+1 .. next_seq-1)."""
    return {"gap": {"session": session, "after_seq": after_seq, "next_seq": next_seq}}


def record_kind(record: dict[str, Any]) -> str:
    """`seal`, `gap` or `event`."""
    if "seal" in record and "seq" not in record:
        return "seal"
    if "gap" in record and "seq" not in record:
        return "gap"
    return "event"
