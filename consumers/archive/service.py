"""The archiver: a durable JetStream consumer feeding the session files, acking after fsync.

    startup:   streams, partition source, lease, scan the archive, consumer
    main loop: deliveries (gathered until the flush is due) -> chained in seq
               order -> every `archive_flush_s` or `archive_flush_events`:
               write + fsync, then AckAll up to the last message below
               anything held back
    each 1 s:  record gaps that timed out, seal idle ended sessions, renew
               the lease, compress what was sealed
    shutdown:  flush, ack, give the lease back

Exactly once in the file: a line is acked only after its fsync, so a crash
loses nothing; after a restart each session's last archived seq (from its
file) recognises what is delivered again.

Suspected forgeries (consumers/holdback.py, consumers/README.md) go to
`_quarantine.jsonl`, logged at error and counted (consumers/suspects.py):
a repeated seq stored after the archived one, and a far-ahead seq that the
session's in-order events overtook. A redelivery (a repeat at or before the
session's last archived stream position) stays silent.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Final

import msgspec
from nats.aio.client import Client

from agentcast.bus import ensure_streams
from agentcast.codec import json_decoder
from agentcast.settings import Settings
from consumers.archive import signing
from consumers.archive.checkpointer import Checkpointer
from consumers.archive.disk import DiskHealth
from consumers.archive.partition import ensure_source, partition_of
from consumers.archive.writer import ArchiveUnwritable, ArchiveWriter
from consumers.consumer import _BUS_ERRORS, LeasedConsumer
from consumers.pull import Delivery
from consumers.suspects import Reason, SuspectEvents

logger = logging.getLogger(__name__)

_decode: Final = json_decoder.decode


class Archiver(LeasedConsumer[dict[str, Any]]):
    """One archiver process's work: its partition of the events into `root`."""

    name = "Archiver"

    def __init__(
        self, settings: Settings, nc: Client, root: Path, suspects: SuspectEvents | None = None
    ) -> None:
        super().__init__(settings, nc)
        self.suspects = suspects or SuspectEvents("archiver")
        self.disk = DiskHealth(self.suspects.registry)
        self.root = root
        self.writer = self._new_writer()
        self._session_token = 2
        self._next_flush = 0.0
        self.archived = 0
        self.checkpoints: Checkpointer | None = None

    def _new_writer(self) -> ArchiveWriter:
        s = self.settings
        return ArchiveWriter(
            self.root,
            seal_idle_s=s.seal_idle_s,
            compress_sealed=s.compress_sealed,
            open_files=s.archive_open_files,
        )

    async def startup(self) -> None:
        logger.info("Archiver starting: %s", self.root)
        await ensure_streams(self.js, self.settings)
        s = self.settings
        src = await ensure_source(
            self.js, s, s.archive_partition, s.archive_partitions, s.archive_consumer
        )
        self._session_token = src.session_token
        self.root.mkdir(parents=True, exist_ok=True)
        await self.open(
            lock_dir=self.root,
            stream=src.stream,
            durable=src.durable,
            filter_subject=src.filter_subject,
            lease_ttl_s=self.settings.archive_lease_ttl_s,
            sourced=src.sourced,
        )
        self.writer.scan()
        self.checkpoints = Checkpointer(
            self.root,
            src.durable,
            signing.key_path(self.settings),
            interval_s=self.settings.checkpoint_interval_s,
            js=self.js,
            replicas=self.settings.replicas,
            owns=self._owns,
        )
        await self.checkpoints.start(self.writer.chains())
        logger.info("Archiver ready: %s from %s (%s)", self.root, src.stream, src.durable)

    # -- one delivery ----------------------------------------------------------------

    def handle(self, delivery: Delivery) -> None:
        d = delivery
        at = self._session_token
        tokens = d.subject.split(".", at + 1)
        session = tokens[at] if len(tokens) > at + 1 else ""
        try:
            env = _decode(d.data)
        except msgspec.DecodeError:
            env = None
        reason = _invalid(env, session)
        if reason:
            self.writer.reject(d.subject, d.cursor, d.data, reason)
            self.acks.append((d.stream_seq, d.reply))
            return
        assert isinstance(env, dict)
        self.writer.get(session, env["ts"])  # a new session's file is dated by its first event
        self.in_order(session, env["seq"], d, env)

    def last_seq(self, session: str) -> int:
        return self.writer.get(session, 0).last_seq

    def apply(self, session: str, item: dict[str, Any], delivery: Delivery) -> None:
        self.writer.append_event(self.writer.get(session, 0), item, delivery.cursor)
        self.archived += 1

    def repeat(self, session: str, seq: int, delivery: Delivery) -> None:
        d, sf = delivery, self.writer.get(session, 0)
        if d.cursor <= sf.last_cursor:
            return  # a redelivery of what is archived (or was quarantined)
        if any(after < seq < nxt for after, nxt in sf.gaps):
            self.writer.reject(d.subject, d.cursor, d.data, "arrived after its gap was recorded")
            return
        self.suspect(
            session,
            seq,
            d,
            "repeated_seq",
            f"repeats seq {seq}, archived before at or below {sf.last_cursor}",
        )

    def suspect(
        self, session: str, seq: int, delivery: Delivery, reason: Reason, detail: str
    ) -> None:
        d = delivery
        self.suspects.count(reason)
        self.writer.quarantine(d.subject, d.cursor, d.data, f"{reason}: {detail}")

    def skip_to(self, session: str, next_seq: int) -> None:
        self.writer.append_gap(self.writer.get(session, 0), next_seq)

    # -- durability ------------------------------------------------------------------

    def wait(self, until_tick: float) -> float:
        # Flushes on a fixed cadence: deliveries gather until then (consumers/pull.py take()),
        # so an event waits at most `archive_flush_s` (plus its fsync) to be archived.
        now = time.monotonic()
        if now >= self._next_flush and not self.writer.pending_lines:
            self._next_flush = now + self.settings.archive_flush_s
        return max(0.0, min(until_tick, self._next_flush - now))

    def commit_due(self) -> bool:
        pending = self.writer.pending_lines
        return bool(pending) and (
            pending >= self.settings.archive_flush_events or time.monotonic() >= self._next_flush
        )

    async def persist(self, final: bool) -> bool:
        if self.disk.blocked and not self.disk.may_try() and not final:
            return False
        lines = self.writer.pending_lines
        try:
            await self.writer.flush()
        except ArchiveUnwritable as exc:
            # Nothing acked: JetStream keeps the events; the lines wait in memory (consumers/archive/disk.py).
            self._next_flush = self.disk.failed(exc, self.writer.pending_lines)
            return False
        self.disk.written(lines)
        self._next_flush = time.monotonic() + self.settings.archive_flush_s
        return True

    async def reset(self) -> None:
        # The files are what is durable: lines not yet written are dropped, chains re-read.
        self.writer.close()
        self.writer = self._new_writer()
        self.writer.scan()
        if self.checkpoints is not None:  # the log may have grown meanwhile: read it again
            await self.checkpoints.start(self.writer.chains())

    async def tick(self) -> None:
        self.expire_gaps()
        if self.puller.pending == 0 and not self.held:
            # Only when caught up: a lagging archiver must not seal a session
            # whose next run is already in the stream (a live one would not
            # have); it seals on reading that run instead (writer.append_event).
            for sf in self.writer.due_for_seal(time.time_ns()):
                self.writer.seal(sf)
        await self.commit()
        if self.disk.blocked:
            return  # checkpoints and compression write too, and a checkpoint needs every line fsynced
        try:
            if self.checkpoints is not None:  # after the commit: every line is fsynced
                await self.checkpoints.tick(self.writer.chains())
        except OSError as exc:
            self.disk.side_failed("checkpoint", exc)
        try:
            await self.writer.compress_sealed()
        except OSError as exc:
            self.disk.side_failed("compression", exc)

    async def shutdown(self) -> None:
        # The last checkpoint while the lease is still ours: once it is given back,
        # another process may write this log.
        if self.checkpoints is not None and not self._paused:
            try:
                await self.commit()
                if not self.disk.blocked:
                    await self.checkpoints.final(self.writer.chains())
            except (*_BUS_ERRORS, OSError) as exc:
                logger.warning("No checkpoint at shutdown (%r): the next start writes one", exc)
        await super().shutdown()

    def _owns(self, session: str) -> bool:
        n = self.settings.archive_partitions
        return n <= 1 or partition_of(session, n) == self.settings.archive_partition

    def close(self) -> None:
        self.writer.close()
        logger.info("Archiver closed its files (%d events archived)", self.archived)


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
