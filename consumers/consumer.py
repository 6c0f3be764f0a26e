"""What the archiver and the metrics process share: a leased durable consumer, applied in seq order.

    run():  startup() -> loop -> shutdown()
    loop:   take deliveries -> handle() each -> commit() when due -> tick() on a period
    commit: persist() (fsync, KV puts) then, once all is durable, AckAll below
            anything held back
    stall:  the lease lost or NATS failing -> pause: no more writes, drop what
            is not durable; wait for NATS and the lease (another process may
            hold it meanwhile: wait for it), reset() the local state, resync
            from the durable's ack floor (unacked work comes again) -> loop

Seq order is kept here, once for every role (`in_order`, `expire_gaps`):
hold back an event that came before its predecessor, skip repeats, release
what follows on, drop suspected forgeries, skip a gap that timed out.

Subclasses say how to decode one delivery, apply an event, make their work
durable, rebuild their state from what is durable, and what to do each tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Final, Generic, TypeVar

import nats.errors
from nats.aio.client import Client

from agentcast.settings import Settings
from consumers.holdback import Held, Holdback
from consumers.lease import LEASES_BUCKET, Lease, LeaseHeld, LeaseLost
from consumers.pull import Delivery, Puller
from consumers.suspects import Reason

logger = logging.getLogger(__name__)

_LEASE_WAIT_S: Final = 30.0
# What a NATS stall, a leader election or a lost connection raises: waited out, never fatal.
_BUS_ERRORS: Final = (LeaseLost, nats.errors.Error, TimeoutError, ConnectionError)
_RETRY_FIRST_S: Final = 0.25
_RETRY_MAX_S: Final = 5.0
T = TypeVar("T")


class LeasedConsumer(ABC, Generic[T]):
    """One process's share of the event stream; `T` is a role's decoded event."""

    name = "consumer"
    tick_s = 1.0

    def __init__(self, settings: Settings, nc: Client) -> None:
        self.settings = settings
        self.nc = nc
        self.js = nc.jetstream()
        self.held: Holdback[tuple[T, Delivery]] = Holdback(settings.gap_timeout_s)
        self.acks: list[tuple[int, str]] = []
        """(stream seq, reply) of the deliveries handled since the last ack."""
        self._puller: Puller | None = None
        self._lease: Lease | None = None
        self._paused = False
        """Between a stall and the lease taken again: nothing is written or acked."""
        self.pauses = 0

    @property
    def puller(self) -> Puller:
        assert self._puller is not None, "startup() has not run"
        return self._puller

    async def open(
        self,
        *,
        lock_dir: Path,
        stream: str,
        durable: str,
        filter_subject: str,
        lease_ttl_s: float,
        lease_bucket: str = LEASES_BUCKET,
        sourced: bool = False,
    ) -> None:
        """Take the lease on `durable`, then start reading it."""
        s = self.settings
        self._lease = Lease(self.js, durable, lock_dir, lease_ttl_s, lease_bucket)
        await self._lease.acquire(_LEASE_WAIT_S)
        self._puller = Puller(
            self.nc,
            self.js,
            stream=stream,
            durable=durable,
            filter_subject=filter_subject,
            batch=s.consumer_batch,
            ack_wait_s=s.consumer_ack_wait_s,
            max_ack_pending=s.consumer_max_ack_pending,
            start_seq=s.consumer_start_seq,
            sourced=sourced,
        )
        await self._puller.start()

    async def run(self, stop: asyncio.Event) -> None:
        await self.startup()
        try:
            while not stop.is_set():
                try:
                    await self._loop(stop)
                except _BUS_ERRORS as exc:
                    await self._ride_out(stop, exc)
        finally:
            await self.shutdown()

    async def _ride_out(self, stop: asyncio.Event, cause: BaseException) -> None:
        """Pause, wait for NATS and the lease, rebuild the state, read on from the ack floor."""
        lease = self._lease
        assert lease is not None
        self._paused = True
        self.pauses += 1
        paused_at = time.monotonic()
        logger.error(
            "%s paused (%s: %s): no writes until NATS and lease %s are back",
            self.name,
            type(cause).__name__,
            cause,
            lease.name,
        )
        # Handled but not durable: dropped; the durable delivers it again after its ack floor.
        self.acks = []
        self.held.clear()
        try:
            await self.puller.stop()
        except _BUS_ERRORS as exc:
            logger.debug("%s: unsubscribe while paused: %r", self.name, exc)
        delay = _RETRY_FIRST_S
        holder = ""
        while not stop.is_set():
            try:
                await lease.acquire(wait_s=lease.ttl_s)
                await self.reset()
                await self.puller.resync()
            except LeaseHeld as exc:
                if exc.holder != holder:
                    logger.warning("%s waits for its lease: %s", self.name, exc)
                    holder = exc.holder
            except _BUS_ERRORS as exc:
                logger.warning(
                    "%s still waiting for NATS (%s: %s)", self.name, type(exc).__name__, exc
                )
            else:
                self._paused = False
                logger.warning(
                    "%s resumed after %.1fs: lease %s taken again, reading on from the ack floor",
                    self.name,
                    time.monotonic() - paused_at,
                    lease.name,
                )
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, _RETRY_MAX_S)

    async def _loop(self, stop: asyncio.Event) -> None:
        puller = self.puller
        next_tick = time.monotonic() + self.tick_s
        while not stop.is_set():
            for delivery in await puller.take(self.wait(max(0.0, next_tick - time.monotonic()))):
                self.handle(delivery)
            if puller.needs_resync:
                await self.commit()
                self.held.clear()
                await puller.resync()
                continue
            if self.commit_due():
                await self.commit()
            if time.monotonic() >= next_tick:
                await self.tick()
                next_tick = time.monotonic() + self.tick_s

    def lease_left_s(self) -> float:
        """What a write in `persist()` may wait for: it must end before the lease could expire."""
        assert self._lease is not None
        return self._lease.left_s()

    async def commit(self, final: bool = False) -> None:
        """Make the handled work durable, then ack up to the last message below anything held."""
        lease = self._lease
        assert lease is not None
        if not lease.valid():
            raise LeaseLost(f"lease {lease.name} expired before a write: stopping")
        if not await self.persist(final):
            if lease.due():
                await lease.renew()
            return
        limit = self.held.min_stream_seq()
        below = [a for a in self.acks if limit is None or a[0] < limit]
        if below:
            top = max(below)
            await self.puller.ack(top[1])
            self.acks = [a for a in self.acks if a[0] > top[0]]
        if lease.due():
            await lease.renew()

    async def shutdown(self) -> None:
        logger.info("%s shutting down", self.name)
        try:
            lease, puller = self._lease, self._puller
            if lease is not None and lease.valid() and puller is not None and not self._paused:
                await self.commit(final=True)
        except _BUS_ERRORS as exc:
            # Not acked: delivered again to whoever reads the durable next.
            logger.warning("%s: last commit failed (%r)", self.name, exc)
        finally:
            if self._puller is not None:
                await self._puller.stop()
            if self._lease is not None:
                await self._lease.release()
            self.close()
        logger.info("%s stopped", self.name)

    # -- seq order, the same for every role (consumers/holdback.py) ------------------------

    def in_order(self, session: str, seq: int, delivery: Delivery, item: T) -> None:
        """One valid event of `session`: held back, skipped as a repeat, or applied with what it releases."""
        d = delivery
        expected = self.last_seq(session) + 1
        if seq > expected:
            other = self.held.hold(session, seq, d.stream_seq, (item, d))
            if other is not None:  # two messages for one held seq: the later one
                self._drop(session, other, "repeated_seq", f"repeats held seq {seq}")
            return
        self.acks.append((d.stream_seq, d.reply))
        if seq < expected:
            self.repeat(session, seq, d)
            return
        self.apply(session, item, d)
        if self.held:
            for gone in self.held.applied(session, seq, d.stream_seq):
                self._drop(session, gone, "repeated_seq", f"held seq {gone.seq} superseded")
            self._release(session, d.stream_seq)

    def _release(self, session: str, after_stream_seq: int) -> None:
        for held in self.held.release(session, self.last_seq(session) + 1, after_stream_seq):
            item, d = held.item
            self.acks.append((d.stream_seq, d.reply))
            self.apply(session, item, d)

    def _drop(
        self, session: str, held: Held[tuple[T, Delivery]], reason: Reason, detail: str
    ) -> None:
        d = held.item[1]
        self.acks.append((d.stream_seq, d.reply))
        self.suspect(session, held.seq, d, reason, detail)

    def expire_gaps(self) -> None:
        """Sessions whose gap waited `gap_timeout_s`: drop what was overtaken, skip the gap."""
        for session in self.held.expired():
            for gone in self.held.overtaken(session):
                detail = (
                    f"seq {gone.seq} held {self.held.gap_timeout_s:.0f}s while the session "
                    "went on in order"
                )
                self._drop(session, gone, "far_ahead", detail)
            first = self.held.first_held(session)
            if first is None:
                continue
            logger.error(
                "%s: session %s: seqs %d..%d never arrived; recording the gap",
                self.name,
                session,
                self.last_seq(session) + 1,
                first - 1,
            )
            self.skip_to(session, first)
            self._release(session, 0)

    # -- what each consumer provides ----------------------------------------------------

    @abstractmethod
    def last_seq(self, session: str) -> int:
        """The session's last seq applied (0 for a new session)."""

    @abstractmethod
    def apply(self, session: str, item: T, delivery: Delivery) -> None:
        """Apply the session's next event (`item`: the role's decoded form of it)."""

    def repeat(self, session: str, seq: int, delivery: Delivery) -> None:
        """A seq at or below the last applied: a redelivery (or a forgery) never applied twice."""

    @abstractmethod
    def suspect(
        self, session: str, seq: int, delivery: Delivery, reason: Reason, detail: str
    ) -> None:
        """A held event its session's writer cannot have written: dropped (acked), say so."""

    @abstractmethod
    def skip_to(self, session: str, next_seq: int) -> None:
        """The seqs before `next_seq` never arrived: go on from there."""

    @abstractmethod
    async def startup(self) -> None:
        """Prepare, then `open()` the consumer."""

    @abstractmethod
    def handle(self, delivery: Delivery) -> None:
        """Decode one delivery: a valid event goes to `in_order()`, anything else is acked here."""

    @abstractmethod
    async def persist(self, final: bool) -> bool:
        """Make everything handled so far durable (True), or some of it only: then no ack yet.

        `final` (at shutdown): all of it, now.
        """

    @abstractmethod
    async def reset(self) -> None:
        """After a pause: forget what was not persisted, reload the state from what is durable."""

    def wait(self, until_tick: float) -> float:
        """How long to wait for deliveries now."""
        return until_tick

    def commit_due(self) -> bool:
        return False

    async def tick(self) -> None:
        await self.commit()

    def close(self) -> None:
        """Release local resources (files) after the last commit."""
