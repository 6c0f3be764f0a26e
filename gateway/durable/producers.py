"""Idempotent producers (`Producer-Id`, `-Epoch`, `-Seq`), pure: the headers parsed, and
what an append from a producer is, given the producer's last accepted (epoch, seq).

Per the protocol: a producer's first append is seq 0; each next one seq + 1; a retry of
an accepted seq is a duplicate (answered 204, stored once); a higher epoch fences the
older one (403 for it) and starts again at seq 0; a gap is 409 with the expected seq.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from gateway.errors import ApiError

ID: Final = "Producer-Id"
EPOCH: Final = "Producer-Epoch"
SEQ: Final = "Producer-Seq"
NUMBER: Final = re.compile(r"[0-9]{1,15}")
MAX_ID: Final = 256


class Refusal(ApiError):
    """An error answered with response headers the client acts on."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str]) -> None:
        super().__init__(status, code, message)
        self.headers = headers


@dataclass(frozen=True, slots=True)
class Producer:
    id: str
    epoch: int
    seq: int

    @property
    def token(self) -> str:
        """A subject token for any id: its messages are stored under it."""
        return hashlib.sha256(self.id.encode()).hexdigest()[:32]

    def headers(self) -> dict[str, str]:
        return {ID: self.id, EPOCH: str(self.epoch), SEQ: str(self.seq)}


def producer_of(headers: Mapping[str, str]) -> Producer | None:
    """The request's producer, None without producer headers; 400 unless all three are
    there and well formed."""
    given = [headers.get(h) for h in (ID, EPOCH, SEQ)]
    if all(v is None for v in given):
        return None
    pid, epoch, seq = given
    if pid is None or epoch is None or seq is None:
        raise ApiError(400, "invalid_producer", f"{ID}, {EPOCH} and {SEQ} go together")
    if not pid or len(pid) > MAX_ID:
        raise ApiError(400, "invalid_producer", f"{ID} must be 1 to {MAX_ID} characters")
    if not NUMBER.fullmatch(epoch) or not NUMBER.fullmatch(seq):
        raise ApiError(400, "invalid_producer", f"{EPOCH} and {SEQ} are non-negative integers")
    return Producer(pid, int(epoch), int(seq))


def state_of(headers: Mapping[str, Any]) -> tuple[int, int] | None:
    """The (epoch, seq) a stored message's producer headers record."""
    epoch, seq = headers.get(EPOCH), headers.get(SEQ)
    return (int(epoch), int(seq)) if epoch is not None and seq is not None else None


def is_new(producer: Producer, state: tuple[int, int] | None) -> bool:
    """True: an append to store; False: a duplicate of one stored. Raises Refusal (403 a
    fenced epoch, 409 a gap) or ApiError (400 a new epoch that does not start at 0)."""
    if state is None:
        expected = 0
    else:
        epoch, seq = state
        if producer.epoch < epoch:
            raise Refusal(403, "stale_epoch", f"epoch {epoch} fenced {producer.epoch}",
                          {EPOCH: str(epoch)})  # fmt: skip
        if producer.epoch > epoch:
            if producer.seq != 0:
                raise ApiError(400, "invalid_producer", "a new epoch starts at seq 0")
            return True
        if producer.seq <= seq:
            return False
        expected = seq + 1
    if producer.seq != expected:
        raise Refusal(409, "sequence_gap", f"expected {SEQ} {expected}, got {producer.seq}",
                      {"Producer-Expected-Seq": str(expected),
                       "Producer-Received-Seq": str(producer.seq)})  # fmt: skip
    return True
