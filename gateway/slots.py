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
from collections.abc import Callable
from typing import Final

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


class Slot:
    """One admitted stream; `release()` (idempotent) gives the slot back."""

    __slots__ = ("_slots", "jti", "on_revoke")

    def __init__(self, slots: StreamSlots, jti: str) -> None:
        self._slots = slots
        self.jti = jti
        self.on_revoke: Callable[[], None] | None = None
        """Ends the stream when its token is revoked (set once the stream has a sink)."""

    def release(self) -> None:
        if self._slots is not None:
            slots, self._slots = self._slots, None  # type: ignore[assignment]
            slots.release(self)


class StreamSlots:
    def __init__(self, js: JetStreamContext, settings: Settings) -> None:
        self._js = js
        self.limit = settings.max_streams_per_token
        self.lease_s = settings.stream_lease_s
        self.replicas = settings.replicas
        self.instance = uuid.uuid4().hex
        self._streams: KeyValue | None = None
        self._gateways: KeyValue | None = None
        self._open: dict[str, set[Slot]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._written: dict[str, float] = {}
        """When this process last stored each jti's count."""
        self._stale: set[str] = set()
        """Tokens whose stored count a failed write left wrong: the renewal writes them."""
        self._alive: dict[str, float] = {}
        """Other instances seen alive, and when (trusted for a third of the lease)."""
        self._tasks: set[asyncio.Task[bool]] = set()

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
        """Keep this process counted as alive, and rewrite counts a failed write left stale;
        until cancelled."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                assert self._gateways is not None
                await asyncio.wait_for(self._gateways.put(self.instance, b"1"), _OP_TIMEOUT_S)
                now = time.monotonic()
                old = {j for j in self._open if now - self._written.get(j, now) > _REWRITE_AFTER_S}
                for jti in old | self._stale:
                    await self._write(jti)
            except (nats.errors.Error, TimeoutError) as exc:
                logger.warning("stream slots: renewal failed: %r", exc)

    def count(self, jti: str) -> int:
        """This process's open streams of `jti`."""
        return len(self._open.get(jti, ()))

    async def acquire(self, jti: str) -> Slot:
        """A slot for one more stream of `jti`, or TooManyStreams (limit 0: no limit, and
        nothing stored)."""
        jti = jti_key(jti)
        if self.limit and self.count(jti) >= self.limit:
            raise self._refusal()
        slot = Slot(self, jti)
        self._open.setdefault(jti, set()).add(slot)
        if not self.limit:
            return slot
        try:
            admitted = await self._write(jti, admitting=True)
        except BaseException:
            self._forget(slot)
            raise
        if not admitted:
            self._forget(slot)
            raise self._refusal()
        return slot

    def _refusal(self) -> TooManyStreams:
        return TooManyStreams(
            "max_streams_per_token",
            f"this token already has {self.limit} open streams; close one first",
        )

    def release(self, slot: Slot) -> None:
        self._forget(slot)
        if not self.limit:
            return
        task = asyncio.get_running_loop().create_task(self._write(slot.jti))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def revoke(self, jti: str) -> int:
        """End every open stream of the token `jti` (its KV key) here; returns how many."""
        ended = 0
        for slot in list(self._open.get(jti, ())):
            if slot.on_revoke is not None:
                slot.on_revoke()
                ended += 1
        return ended

    def _forget(self, slot: Slot) -> None:
        held = self._open.get(slot.jti)
        if held is not None:
            held.discard(slot)
            if not held:
                del self._open[slot.jti]

    async def _write(self, jti: str, *, admitting: bool = False) -> bool:
        """Store this process's count of `jti` (dropping dead instances); when `admitting`,
        refuse (False) if the other gateways' streams leave no room for it."""
        lock = self._locks.setdefault(jti, asyncio.Lock())
        try:
            async with lock:
                return await asyncio.wait_for(self._cas(jti, admitting), _OP_TIMEOUT_S * 3)
        except (nats.errors.Error, TimeoutError) as exc:
            # NATS away: admit on this process's own count; the renewal writes it back later.
            logger.warning("stream slots of a token not stored: %r", exc)
            self._stale.add(jti)
            return True
        finally:
            if not lock.locked() and jti not in self._open:
                self._locks.pop(jti, None)

    async def _cas(self, jti: str, admitting: bool) -> bool:
        assert self._streams is not None
        for _ in range(_CAS_TRIES):
            stored, revision = await self._read(jti)
            counts = {k: v for k, v in stored.items() if k != self.instance and v > 0}
            for other in list(counts):
                if not await self._is_alive(other):
                    del counts[other]
            mine = self.count(jti)
            if admitting and sum(counts.values()) + mine > self.limit:
                return False
            if mine:
                counts[self.instance] = mine
            try:
                if counts != stored:
                    await self._streams.update(jti, _encode(counts), last=revision)
            except KeyWrongLastSequenceError:
                continue  # another gateway wrote first: read again
            self._stale.discard(jti)
            self._written[jti] = time.monotonic()
            if not mine:
                self._written.pop(jti, None)
            return True
        raise TimeoutError(f"stream slots of a token: {_CAS_TRIES} conflicting writes")

    async def _read(self, jti: str) -> tuple[dict[str, int], int]:
        """The stored counts of `jti` and their revision (0: no such key)."""
        assert self._streams is not None
        try:
            entry = await self._streams.get(jti)
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
        for task in list(self._tasks):
            await asyncio.gather(task, return_exceptions=True)
        jtis = set(self._open) | set(self._written) | self._stale
        self._open.clear()
        for jti in jtis:
            try:
                await self._write(jti)
            except Exception as exc:  # noqa: BLE001 - at shutdown: the lease frees them
                logger.debug("stream slots at shutdown: %r", exc)
        if self._gateways is not None:
            try:
                await asyncio.wait_for(self._gateways.delete(self.instance), _OP_TIMEOUT_S)
            except (nats.errors.Error, TimeoutError) as exc:
                logger.debug("gateway instance key at shutdown: %r", exc)
