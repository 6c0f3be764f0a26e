"""The archiver: a durable JetStream consumer feeding the session files, acking after fsync.

    startup:   streams, partition source, lease, scan the archive, consumer
    main loop: take deliveries -> chain them in seq order -> every
               `archive_flush_s` or `archive_flush_events`: write + fsync,
               then AckAll up to the last message below anything held back
    each 1 s:  record gaps that timed out, seal idle ended sessions, renew
               the lease
    shutdown:  flush, ack, give the lease back

Exactly once in the file: a line is acked only after its fsync, so a crash
loses nothing; after a restart each session's last archived seq (from its
file) recognises what is delivered again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Final

import msgspec
from nats.aio.client import Client

from agentcast.bus import ensure_streams
from agentcast.settings import Settings
from consumers.archive.partition import Source, ensure_source
from consumers.archive.writer import ArchiveWriter
from consumers.holdback import Holdback
from consumers.lease import Lease, LeaseLost
from consumers.pull import Delivery, Puller

logger = logging.getLogger(__name__)

_HOUSEKEEPING_S: Final = 1.0
_LEASE_WAIT_S: Final = 30.0
_decode: Final = msgspec.json.Decoder().decode


class Archiver:
    """One archiver process's work: its partition of the events into `root`."""

    def __init__(self, settings: Settings, nc: Client, root: Path) -> None:
        self._settings = settings
        self._nc = nc
        self._js = nc.jetstream()
        self.root = root
        self.writer = ArchiveWriter(
            root,
            seal_idle_s=settings.seal_idle_s,
            compress_sealed=settings.compress_sealed,
            open_files=settings.archive_open_files,
        )
        self._held: Holdback[tuple[dict[str, Any], Delivery]] = Holdback(settings.gap_timeout_s)
        self._acks: list[tuple[int, str]] = []
        self._first_pending = 0.0
        self._source: Source | None = None
        self._puller: Puller | None = None
        self._lease: Lease | None = None
        self.archived = 0

    # -- lifecycle -----------------------------------------------------------------

    async def startup(self) -> None:
        s = self._settings
        logger.info("Archiver starting: %s", self.root)
        await ensure_streams(self._js, s)
        self._source = src = await ensure_source(self._js, s)
        self._lease = Lease(self._js, src.lease, self.root, s.archive_lease_ttl_s)
        await self._lease.acquire(_LEASE_WAIT_S)
        self.writer.scan()
        self._puller = Puller(
            self._nc,
            self._js,
            stream=src.stream,
            durable=src.durable,
            filter_subject=src.filter_subject,
            batch=s.consumer_batch,
            ack_wait_s=s.consumer_ack_wait_s,
            max_ack_pending=s.consumer_max_ack_pending,
        )
        await self._puller.start()
        logger.info("Archiver ready: %s from %s (%s)", self.root, src.stream, src.durable)

    async def main_loop(self, stop: asyncio.Event) -> None:
        assert self._puller is not None
        s = self._settings
        next_housekeeping = time.monotonic() + _HOUSEKEEPING_S
        while not stop.is_set():
            now = time.monotonic()
            wait = _HOUSEKEEPING_S if not self.writer.pending_lines else s.archive_flush_s
            wait = min(wait, max(0.0, next_housekeeping - now))
            for delivery in await self._puller.take(wait):
                self._handle(delivery)
            if self._puller.needs_resync:
                await self._commit()
                self._held.clear()
                await self._puller.resync()
                continue
            now = time.monotonic()
            if self.writer.pending_lines and not self._first_pending:
                self._first_pending = now
            if self.writer.pending_lines >= s.archive_flush_events or (
                self._first_pending and now - self._first_pending >= s.archive_flush_s
            ):
                await self._commit()
            if now >= next_housekeeping:
                await self._housekeeping()
                next_housekeeping = time.monotonic() + _HOUSEKEEPING_S

    async def shutdown(self) -> None:
        logger.info("Archiver shutting down")
        try:
            if self._lease is not None and self._lease.valid():
                await self._commit()
        finally:
            if self._puller is not None:
                await self._puller.stop()
            if self._lease is not None:
                await self._lease.release()
            self.writer.close()
        logger.info("Archiver stopped (%d events archived)", self.archived)

    async def run(self, stop: asyncio.Event) -> None:
        await self.startup()
        try:
            await self.main_loop(stop)
        finally:
            await self.shutdown()

    # -- one delivery ----------------------------------------------------------------

    def _handle(self, d: Delivery) -> None:
        assert self._source is not None
        at = self._source.session_token
        tokens = d.subject.split(".", at + 1)
        session = tokens[at] if len(tokens) > at + 1 else ""
        try:
            env = _decode(d.data)
        except msgspec.DecodeError:
            env = None
        reason = _invalid(env, session)
        if reason:
            self.writer.reject(d.subject, d.stream_seq, d.data, reason)
            self._acks.append((d.stream_seq, d.reply))
            return
        assert isinstance(env, dict)
        seq: int = env["seq"]
        sf = self.writer.get(session, env["ts"])
        expected = sf.last_seq + 1
        if seq > expected:
            self._held.hold(session, seq, d.stream_seq, (env, d))
            return
        self._acks.append((d.stream_seq, d.reply))
        if seq < expected:
            if any(after < seq < nxt for after, nxt in sf.gaps):
                self.writer.reject(d.subject, d.stream_seq, d.data, "arrived after its gap was recorded")
            return
        self.writer.append_event(sf, env, d.stream_seq)
        self.archived += 1
        if self._held:
            self._release(session)

    def _release(self, session: str) -> None:
        sf = self.writer.get(session, 0)
        for held in self._held.release(session, sf.last_seq + 1):
            env, d = held.item
            self.writer.append_event(sf, env, d.stream_seq)
            self._acks.append((d.stream_seq, d.reply))
            self.archived += 1

    # -- durability and acks -----------------------------------------------------------

    async def _commit(self) -> None:
        """fsync what is pending, then ack up to the last message below anything held."""
        assert self._puller is not None and self._lease is not None
        if not self._lease.valid():
            raise LeaseLost(f"lease {self._lease.name} expired before a write: stopping")
        await self.writer.flush()
        self._first_pending = 0.0
        if not self._acks:
            return
        limit = self._held.min_stream_seq()
        below = [a for a in self._acks if limit is None or a[0] < limit]
        if not below:
            return
        top = max(below)
        await self._puller.ack(top[1])
        self._acks = [a for a in self._acks if a[0] > top[0]]

    async def _housekeeping(self) -> None:
        assert self._lease is not None
        for session in self._held.expired():
            first = self._held.first_held(session)
            if first is None:
                continue
            sf = self.writer.get(session, 0)
            logger.error("Session %s: seqs %d..%d never arrived; recording the gap", session, sf.last_seq + 1, first - 1)
            self.writer.append_gap(sf, first)
            self._release(session)
        for sf in self.writer.due_for_seal(time.time_ns()):
            self.writer.seal(sf)
        if self._lease.due():
            await self._lease.renew()
        await self._commit()
        await self.writer.compress_sealed()


def _invalid(env: object, session: str) -> str:
    """Why a payload cannot join a chain, or '' when it can."""
    if not isinstance(env, dict):
        return "not a JSON object"
    if env.get("session") != session:
        return f"session {env.get('session')!r} does not match the subject"
    seq, ts = env.get("seq"), env.get("ts")
    if type(seq) is not int or seq < 1:
        return "seq is not a positive integer"
    if type(ts) is not int:
        return "ts is not an integer"
    return ""
