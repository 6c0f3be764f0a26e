"""Stream slots: open SSE streams plus WebSockets per token `jti`, counted over every gateway.

Two KV buckets are the shared medium. `agentcast_streams` holds one key per
jti, a map {gateway instance: its open streams}, changed only by
compare-and-set, so two gateways admitting at once cannot both take the last
slot. `agentcast_gateways` holds one key per live gateway process, renewed
every third of `stream_lease_s` with a TTL of `stream_lease_s`: a counted
instance whose key is gone has died, and its slots are dropped by the next
writer. So a closed stream frees its slot at once (its gateway rewrites its
count), and a killed gateway's slots free themselves within the lease.

This costs a few KV round trips when a stream opens and one write when it
closes; nothing per event. When NATS cannot be reached the gateway admits
against its own count only, and writes the true count back once it can.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Final, Literal, Protocol

import msgspec
import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from agentcast.bus import key_value
from agentcast.errors import TooManyStreams
from agentcast.settings import Settings
from agentcast.tokens import jti_key

logger = logging.getLogger(__name__)

STREAMS_BUCKET: Final = "agentcast_streams"
GATEWAYS_BUCKET: Final = "agentcast_gateways"
_STREAMS_TTL_S: Final = 7 * 24 * 3600.0
"""Keys of tokens nobody uses any more go away on their own."""
_REWRITE_AFTER_S: Final = _STREAMS_TTL_S / 4
_CAS_TRIES: Final = 8
_OP_TIMEOUT_S: Final = 2.0

_counts = msgspec.json.Decoder(dict[str, int])
_encode = msgspec.json.Encoder().encode


class Revocable(Protocol):
    """What a slot ends when its token is revoked: the stream's sink (gateway/sink.py)."""

    def finish(self, reason: Literal["revoked"]) -> None: ...


class Slot:
    """One admitted stream; `release()` (idempotent) gives the slot back."""

    __slots__ = ("_slots", "jti", "stream")

    def __init__(self, slots: StreamSlots, jti: str) -> None:
        self._slots = slots
        self.jti = jti
        self.stream: Revocable | None = None
        """Ended when its token is revoked (set once the stream has a sink; no closure, so
        an open stream costs no more than this object)."""

    def release(self) -> None:
        if self._slots is not None:
            slots, self._slots = self._slots, None  # type: ignore[assignment]
            slots.release(self)


class StreamSlots:
    """This process's share of the slots, and the one writer per token that stores it.

    Streams of one token that open together are admitted in one write: each
    `acquire` waits in its token's batch, and the token's writer task reads
    the stored counts, admits what fits and stores its new count, then takes
    the next batch. A burst of one token's connections costs a few writes, not
    one each, and never holds their requests in a queue of writes.
    """

    def __init__(self, js: JetStreamContext, settings: Settings) -> None:
        self._js = js
        self.limit = settings.max_streams_per_token
        self.lease_s = settings.stream_lease_s
        self.replicas = settings.replicas
        self.instance = uuid.uuid4().hex
        self._streams: KeyValue | None = None
        self._gateways: KeyValue | None = None
        self._open: dict[str, set[Slot]] = {}
        self._waiting: dict[str, list[tuple[Slot, asyncio.Future[bool]]]] = {}
        self._writers: dict[str, asyncio.Task[None]] = {}
        self._dirty: set[str] = set()
        """Tokens whose stored count is not this process's (a release, a failed write)."""
        self._written: dict[str, float] = {}
        """When this process last stored each token's count."""
        self._alive: dict[str, float] = {}
        """Other instances seen alive, and when (trusted for a third of the lease)."""

    async def start(self) -> None:
        self._streams = await key_value(
            self._js, STREAMS_BUCKET, "open streams per token jti, by gateway", self.replicas,
            ttl_s=_STREAMS_TTL_S,
        )  # fmt: skip
        self._gateways = await key_value(
            self._js, GATEWAYS_BUCKET, "live gateway processes", self.replicas,
            ttl_s=self.lease_s,
        )  # fmt: skip
        await self._gateways.put(self.instance, b"1")

    async def renew(self) -> None:
        """Keep this process counted as alive, and store again the counts a failed write left
        stale or that have not been written for long; until cancelled."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                assert self._gateways is not None
                await asyncio.wait_for(self._gateways.put(self.instance, b"1"), _OP_TIMEOUT_S)
            except (nats.errors.Error, TimeoutError) as exc:
                logger.warning("stream slots: lease renewal failed: %r", exc)
            now = time.monotonic()
            for key in [
                k for k in self._open if now - self._written.get(k, now) > _REWRITE_AFTER_S
            ]:
                self._dirty.add(key)
            for key in list(self._dirty):
                self._kick(key)

    def count(self, key: str) -> int:
        """This process's open streams of the token `key`."""
        return len(self._open.get(key, ()))

    async def acquire(self, jti: str) -> Slot:
        """A slot for one more stream of `jti`, or TooManyStreams (limit 0: no limit, and
        nothing stored)."""
        key = jti_key(jti)
        slot = Slot(self, key)
        if not self.limit:
            self._open.setdefault(key, set()).add(slot)
            return slot
        if self.count(key) + len(self._waiting.get(key, ())) >= self.limit:
            raise self._refusal()
        admitted = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append((slot, admitted))
        self._kick(key)
        try:
            if not await admitted:
                raise self._refusal()
        except asyncio.CancelledError:
            if admitted.done() and not admitted.cancelled() and admitted.result():
                slot.release()  # admitted just as the client went away
            raise
        return slot

    def _refusal(self) -> TooManyStreams:
        return TooManyStreams(
            "max_streams_per_token",
            f"this token already has {self.limit} open streams; close one first",
        )

    def release(self, slot: Slot) -> None:
        held = self._open.get(slot.jti)
        if held is not None:
            held.discard(slot)
            if not held:
                del self._open[slot.jti]
        if self.limit:
            self._dirty.add(slot.jti)
            self._kick(slot.jti)

    def revoke(self, jti: str) -> int:
        """End every open stream of the token `jti` (its KV key) here; returns how many."""
        ended = 0
        for slot in list(self._open.get(jti, ())):
            if slot.stream is not None:
                slot.stream.finish("revoked")
                ended += 1
        return ended

    def _kick(self, key: str) -> None:
        if key not in self._writers:
            self._writers[key] = asyncio.get_running_loop().create_task(self._write_loop(key))

    async def _write_loop(self, key: str) -> None:
        """The token's writer: batches of waiting streams, then its count, until none is left
        (no await between the last check and the end: a new waiter starts a new writer)."""
        batch: list[tuple[Slot, asyncio.Future[bool]]] = []
        try:
            while self._waiting.get(key) or key in self._dirty:
                batch = [(s, f) for s, f in self._waiting.pop(key, []) if not f.done()]
                self._dirty.discard(key)
                granted = await self._store(key, len(batch))
                for i, (slot, admitted) in enumerate(batch):
                    if admitted.done():  # its client went away meanwhile: stored one too many
                        self._dirty.add(key)
                    elif i < granted:
                        self._open.setdefault(key, set()).add(slot)
                        admitted.set_result(True)
                    else:
                        admitted.set_result(False)
                batch = []
        finally:
            del self._writers[key]
            for _, admitted in [*batch, *self._waiting.pop(key, [])]:
                if not admitted.done():  # only when the writer is cancelled, at shutdown
                    admitted.set_result(False)

    async def _store(self, key: str, wanted: int) -> int:
        """Store this process's count of `key` plus as many of `wanted` new streams as fit
        beside the other gateways' (dead ones dropped); returns how many fit."""
        try:
            return await asyncio.wait_for(self._cas(key, wanted), _OP_TIMEOUT_S * 3)
        except (nats.errors.Error, TimeoutError) as exc:
            # NATS away: admit on this process's own count; the renewal writes it back later.
            logger.warning("stream slots of a token not stored: %r", exc)
            self._dirty.add(key)
            return max(0, min(wanted, self.limit - self.count(key)))

    async def _cas(self, key: str, wanted: int) -> int:
        assert self._streams is not None
        for _ in range(_CAS_TRIES):
            stored, revision = await self._read(key)
            counts = {k: v for k, v in stored.items() if k != self.instance and v > 0}
            for other in list(counts):
                if not await self._is_alive(other):
                    del counts[other]
            mine = self.count(key)
            granted = max(0, min(wanted, self.limit - sum(counts.values()) - mine))
            if mine + granted:
                counts[self.instance] = mine + granted
            try:
                if counts != stored:
                    await self._streams.update(key, _encode(counts), last=revision)
            except KeyWrongLastSequenceError:
                continue  # another gateway wrote first: read again
            self._written[key] = time.monotonic()
            if not mine + granted:
                self._written.pop(key, None)
            return granted
        raise TimeoutError(f"stream slots of a token: {_CAS_TRIES} conflicting writes")

    async def _read(self, key: str) -> tuple[dict[str, int], int]:
        """The stored counts of `key` and their revision (0: no such key)."""
        assert self._streams is not None
        try:
            entry = await self._streams.get(key)
        except KeyNotFoundError:
            return {}, 0
        try:
            return _counts.decode(entry.value or b"{}"), entry.revision or 0
        except msgspec.DecodeError:  # not ours: overwritten
            return {}, entry.revision or 0

    async def _is_alive(self, instance: str) -> bool:
        now = time.monotonic()
        seen = self._alive.get(instance)
        if seen is not None and now - seen < self.lease_s / 3:
            return True
        assert self._gateways is not None
        try:
            await self._gateways.get(instance)
        except KeyNotFoundError:
            self._alive.pop(instance, None)
            return False
        self._alive[instance] = now
        return True

    async def close(self) -> None:
        """Give back this process's slots (a clean shutdown need not wait for the lease)."""
        for task in list(self._writers.values()):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        keys = set(self._open) | set(self._written) | self._dirty
        self._open.clear()
        if self.limit:
            for key in keys:
                await self._store(key, 0)
        if self._gateways is not None:
            try:
                await asyncio.wait_for(self._gateways.delete(self.instance), _OP_TIMEOUT_S)
            except (nats.errors.Error, TimeoutError) as exc:
                logger.debug("gateway instance key at shutdown: %r", exc)
