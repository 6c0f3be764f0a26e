"""Exclusive ownership of a durable consumer: a NATS KV lease, plus a lock file for restarts.

Two processes reading one AckAll consumer would each ack the other's
messages, and two archivers writing one session would fork its chain; so
each partition of the work has one owner at a time:

- The owner holds the key `<name>` in the KV bucket `agentcast_leases`
  (`agentcast_metrics_leases` for the metrics partitions),
  whose TTL expires it unless renewed (every TTL/3). It stops writing before
  its lease could have expired unrenewed (`valid()`), so a successor that
  takes over an expired key never overlaps with it.
- It also holds an flock on `<dir>/.<name>.lock`. A process restarted after
  kill -9 on the same directory gets the lock at once (the kernel released
  it), which proves the key's holder with the same identity is dead: it
  takes the key over without waiting for the TTL.

A lease lost in a NATS stall is taken again with `acquire()` on the same
object: it keeps its flock meanwhile, so no process on this directory slips in.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import socket
import time
from pathlib import Path
from typing import Final

import msgspec
import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import (
    KeyDeletedError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
)
from nats.js.kv import KeyValue

from agentcast.errors import AgentcastError
from consumers.buckets import bucket

logger = logging.getLogger(__name__)

LEASES_BUCKET: Final = "agentcast_leases"
# The metrics partitions' leases: a bucket of their own, because a KV bucket
# has one TTL (its creator's), and `metrics_lease_ttl_s` is not the archive's.
METRICS_LEASES_BUCKET: Final = "agentcast_metrics_leases"
# Stop writing this long before the lease could expire unrenewed.
_MARGIN: Final = 0.2


class LeaseHeld(AgentcastError):
    """Another process owns this share of the work."""

    code = "lease_held"

    def __init__(self, name: str, holder: str) -> None:
        self.name = name
        self.holder = holder
        super().__init__(f"{name} is owned by {holder}")


class LeaseLost(AgentcastError):
    """The lease could not be renewed in time: stop writing now."""

    code = "lease_lost"


class _Holder(msgspec.Struct, frozen=True):
    host: str
    dir: str
    pid: int

    def same_place(self, other: _Holder) -> bool:
        return self.host == other.host and self.dir == other.dir


class Lease:
    """Ownership of `name`, taken with `acquire()`, kept with `renew()`, given back with `release()`."""

    def __init__(
        self,
        js: JetStreamContext,
        name: str,
        lock_dir: Path,
        ttl_s: float,
        bucket: str = LEASES_BUCKET,
    ) -> None:
        self._js = js
        self.name = name
        self._bucket = bucket
        self._ttl = ttl_s
        self._lock_path = lock_dir / f".{name}.lock"
        self._me = _Holder(socket.gethostname(), str(lock_dir.resolve()), os.getpid())
        self._kv: KeyValue | None = None
        self._lock_fd: int | None = None
        self._revision = 0
        self._valid_until = 0.0
        self._renewed_at = 0.0

    @property
    def ttl_s(self) -> float:
        return self._ttl

    async def acquire(self, wait_s: float) -> None:
        """Take the lease, waiting up to `wait_s` for a holder elsewhere to let it go or expire.

        Raises LeaseHeld when it is still held then, and NATS errors as they come.
        """
        first = self._lock_fd is None
        if first:
            self._lock()
        try:
            await self._take(wait_s)
        except BaseException:
            if first:
                self._unlock()
            raise
        logger.info("Acquired lease %s", self.name)

    async def _take(self, wait_s: float) -> None:
        self._valid_until = 0.0
        self._kv = await bucket(
            self._js,
            self._bucket,
            "owners of agentcast consumers (archiver partitions, metrics)",
            self._ttl,
        )
        # The bucket's TTL is what expires the key, whoever created the bucket.
        self._ttl = (await self._kv.status()).ttl or self._ttl
        deadline = time.monotonic() + wait_s
        value = msgspec.json.encode(self._me)
        while True:
            started = time.monotonic()
            try:
                self._revision = await self._kv.create(self.name, value)
                break
            except KeyWrongLastSequenceError:
                pass
            try:
                entry = await self._kv.get(self.name)
            except (KeyNotFoundError, KeyDeletedError):
                continue
            holder = msgspec.json.decode(entry.value or b"{}", type=_Holder)
            if holder.same_place(self._me):
                # Our flock proves that process is gone (or is this one, after a stall).
                assert entry.revision is not None
                self._revision = await self._kv.update(self.name, value, last=entry.revision)
                break
            if time.monotonic() >= deadline:
                raise LeaseHeld(self.name, f"pid {holder.pid} on {holder.host} ({holder.dir})")
            await asyncio.sleep(min(0.5, self._ttl / 4))
        self._valid_until = started + self._ttl - _MARGIN * self._ttl
        self._renewed_at = time.monotonic()

    def valid(self) -> bool:
        return time.monotonic() < self._valid_until

    def left_s(self) -> float:
        """How long writes may still go on unrenewed: what a write may wait for at most."""
        return max(0.0, self._valid_until - time.monotonic())

    def due(self) -> bool:
        return time.monotonic() - self._renewed_at >= self._ttl / 3

    async def renew(self) -> None:
        assert self._kv is not None
        started = time.monotonic()
        try:
            self._revision = await self._kv.update(
                self.name, msgspec.json.encode(self._me), last=self._revision
            )
        except nats.errors.Error as exc:
            if not self.valid():
                raise LeaseLost(f"lease {self.name} lost: {exc!r}") from exc
            logger.warning("Lease %s not renewed (%r); retrying", self.name, exc)
            return
        self._valid_until = started + self._ttl - _MARGIN * self._ttl
        self._renewed_at = time.monotonic()

    async def release(self) -> None:
        if self._kv is not None and self._revision:
            try:
                await self._kv.delete(self.name, last=self._revision)
            except nats.errors.Error as exc:  # expired already, or NATS gone: the TTL frees it
                logger.debug("Lease %s release: %r", self.name, exc)
        self._revision = 0
        self._unlock()

    def _lock(self) -> None:
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LeaseHeld(self.name, f"another process on {self._lock_path.parent}") from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
