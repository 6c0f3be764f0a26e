"""The checkpoint format (pure): entries, the signed header, log lines, and the state they rebuild.

A checkpoint log (`DIR/_checkpoints.<archive id>.jsonl`) holds one line per checkpoint:

    {"checkpoint": HEADER, "sig": "<base64 Ed25519 signature of canonical(HEADER)>",
     "full": true|false, "entries": [ENTRY, ...]}
    HEADER = {"v": 1, "archive": ID, "seq": N, "time": <unix ns>,
              "prev": "<hex sha256 of canonical(previous HEADER)>" ("" for #1),
              "size": <sessions in the tree>, "root": "<hex RFC 6962 root>",
              "key": "ed25519:<base64>", "next_key": "ed25519:..." (only when rotating)}
    ENTRY  = {"session": S, "date": "YYYY-MM-DD", "count": <events>, "last_seq": Q,
              "head": "<hash of the file's last line>"}

`entries` lists every session when `full` (the first checkpoint after each
start), else only those changed since the previous checkpoint; applying them
in order gives every checkpoint's complete set, whose leaves (canonical
bytes of each ENTRY, sorted by session) hash to `root`. Canonical bytes are
the chain's (consumers/README.md): sorted keys, no whitespace, UTF-8.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from agentcast.codec import encode
from consumers.archive import chain, merkle

VERSION: Final = 1
LOG_PREFIX: Final = "_checkpoints."
LOG_SUFFIX: Final = ".jsonl"

_encode: Final = encode


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One session file as a checkpoint records it: a leaf of the tree."""

    session: str
    date: str
    count: int
    last_seq: int
    head: str

    def leaf(self) -> bytes:
        return merkle.leaf_hash(chain.canonical(msgspec.structs.asdict(self)))


class MalformedCheckpoint(ValueError):
    """A log line that is not a checkpoint."""


@dataclass(frozen=True)
class Checkpoint:
    """One parsed line of a checkpoint log."""

    line: int
    header: dict[str, Any]
    sig: str
    full: bool
    entries: list[Entry]

    @property
    def seq(self) -> int:
        return int(self.header["seq"])

    @property
    def signed_bytes(self) -> bytes:
        return chain.canonical(self.header)

    @property
    def digest(self) -> str:
        """What the next checkpoint's `prev` holds."""
        return header_hash(self.header)

    def witness_payload(self) -> bytes:
        return witness_payload(self.header, self.sig)


def log_name(archive_id: str) -> str:
    return f"{LOG_PREFIX}{archive_id}{LOG_SUFFIX}"


def header_hash(header: dict[str, Any]) -> str:
    return hashlib.sha256(chain.canonical(header)).hexdigest()


def witness_payload(header: dict[str, Any], sig: str) -> bytes:
    """What the witness keeps of a checkpoint: its signed header."""
    return chain.canonical({"checkpoint": header, "sig": sig})


def tree_root(entries: Iterable[Entry]) -> str:
    """The hex Merkle root over entries (sorted here by session)."""
    return merkle.root([e.leaf() for e in sorted(entries, key=lambda e: e.session)]).hex()


def log_line(header: dict[str, Any], sig: str, full: bool, entries: list[Entry]) -> bytes:
    record = {"checkpoint": header, "sig": sig, "full": full, "entries": entries}
    return _encode(record) + b"\n"


def parse_line(no: int, raw: bytes) -> Checkpoint:
    try:
        record = msgspec.json.decode(raw)
        header, sig = record["checkpoint"], record["sig"]
        entries = msgspec.convert(record.get("entries", []), list[Entry])
        full = bool(record.get("full", False))
        if not isinstance(header, dict) or not isinstance(sig, str):
            raise TypeError("header or signature of the wrong type")
        for name in ("seq", "prev", "root", "size", "key", "archive"):
            if name not in header:
                raise KeyError(name)
        if type(header["seq"]) is not int:
            raise TypeError("seq is not an integer")
    except (msgspec.DecodeError, msgspec.ValidationError, KeyError, TypeError) as exc:
        raise MalformedCheckpoint(f"not a checkpoint ({type(exc).__name__}: {exc})") from None
    return Checkpoint(no, header, sig, full, entries)


def parse_witness(payload: bytes) -> tuple[dict[str, Any], str]:
    """(header, sig) of a witness message."""
    try:
        record = msgspec.json.decode(payload)
        header, sig = record["checkpoint"], record["sig"]
    except (msgspec.DecodeError, KeyError, TypeError) as exc:
        raise MalformedCheckpoint(f"not a witnessed checkpoint ({exc})") from None
    if not isinstance(header, dict) or not isinstance(sig, str):
        raise MalformedCheckpoint("not a witnessed checkpoint")
    return header, sig


def split_log(data: bytes) -> tuple[list[bytes], bytes]:
    """(complete lines, the unfinished tail a crash left: never fsynced, never witnessed)."""
    keep = data.rfind(b"\n") + 1
    return data[:keep].splitlines(), data[keep:]


def apply(state: dict[str, Entry], cp: Checkpoint) -> None:
    """The complete set of a checkpoint from its predecessor's."""
    if cp.full:
        state.clear()
    for e in cp.entries:
        state[e.session] = e
