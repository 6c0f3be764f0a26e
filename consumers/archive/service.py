"""The archiver: a durable JetStream consumer feeding the session files, acking after fsync.

    startup:   streams, partition source, lease, scan the archive, consumer
    main loop: deliveries -> chained in seq order -> every `archive_flush_s`
               or `archive_flush_events`: write + fsync, then AckAll up to
               the last message below anything held back
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
from agentcast.settings import Settings
from consumers.archive import signing
from consumers.archive.checkpointer import Checkpointer
from consumers.archive.partition import ensure_source, partition_of
from consumers.archive.writer import ArchiveWriter
from consumers.consumer import _BUS_ERRORS, LeasedConsumer
from consumers.pull import Delivery
from consumers.suspects import Reason, SuspectEvents

logger = logging.getLogger(__name__)

_decode: Final = msgspec.json.Decoder().decode


class Archiver(LeasedConsumer[tuple[dict[str, Any], Delivery]]):
    """One archiver process's work: its partition of the events into `root`."""

    name = "Archiver"

    def __init__(
        self, settings: Settings, nc: Client, root: Path, suspects: SuspectEvents | None = None
    ) -> None:
        super().__init__(settings, nc)
        self.suspects = suspects or SuspectEvents("archiver")
        self.root = root
        self.writer = self._new_writer()
        self._session_token = 2
        self._first_pending = 0.0
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
        src = await ensure_source(self.js, self.settings)
        self._session_token = src.session_token
        self.root.mkdir(parents=True, exist_ok=True)
        await self.open(
            lock_dir=self.root,
            stream=src.stream,
            durable=src.durable,
            filter_subject=src.filter_subject,
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
        seq: int = env["seq"]
        sf = self.writer.get(session, env["ts"])
        expected = sf.last_seq + 1
        if seq > expected:
            other = self.held.hold(session, seq, d.stream_seq, (env, d))
            if other is not None:  # two messages for one held seq: the later one
                self.acks.append((other.stream_seq, other.item[1].reply))
                self._quarantine(other.item[1], "repeated_seq", f"repeats held seq {seq}")
            return
        self.acks.append((d.stream_seq, d.reply))
        if seq < expected:
            if d.cursor <= sf.last_cursor:
                return  # a redelivery of what is archived (or was quarantined)
            if any(after < seq < nxt for after, nxt in sf.gaps):
                self.writer.reject(
                    d.subject, d.cursor, d.data, "arrived after its gap was recorded"
                )
                return
            self._quarantine(
                d,
                "repeated_seq",
                f"repeats seq {seq}, archived before at or below {sf.last_cursor}",
            )
            return
        self.writer.append_event(sf, env, d.cursor)
        self.archived += 1
        if self.held:
            for gone in self.held.applied(session, seq, d.stream_seq):
                self.acks.append((gone.stream_seq, gone.item[1].reply))
                self._quarantine(gone.item[1], "repeated_seq", f"held seq {gone.seq} superseded")
            self._release(session, d.stream_seq)

    def _release(self, session: str, after_stream_seq: int) -> None:
        sf = self.writer.get(session, 0)
        for held in self.held.release(session, sf.last_seq + 1, after_stream_seq):
            env, d = held.item
            self.writer.append_event(sf, env, d.cursor)
            self.acks.append((d.stream_seq, d.reply))
            self.archived += 1

    def _quarantine(self, d: Delivery, reason: Reason, detail: str) -> None:
        self.suspects.count(reason)
        self.writer.quarantine(d.subject, d.cursor, d.data, f"{reason}: {detail}")

    # -- durability ------------------------------------------------------------------

    def wait(self, until_tick: float) -> float:
        return (
            min(until_tick, self.settings.archive_flush_s)
            if self.writer.pending_lines
            else until_tick
        )

    def commit_due(self) -> bool:
        if not self.writer.pending_lines:
            return False
        now = time.monotonic()
        if not self._first_pending:
            self._first_pending = now
        return (
            self.writer.pending_lines >= self.settings.archive_flush_events
            or now - self._first_pending >= self.settings.archive_flush_s
        )

    async def persist(self) -> None:
        await self.writer.flush()
        self._first_pending = 0.0

    async def reset(self) -> None:
        # The files are what is durable: lines not yet written are dropped, chains re-read.
        self.writer.close()
        self.writer = self._new_writer()
        self.writer.scan()
        self._first_pending = 0.0
        if self.checkpoints is not None:  # the log may have grown meanwhile: read it again
            await self.checkpoints.start(self.writer.chains())

    async def tick(self) -> None:
        for session in self.held.expired():
            for gone in self.held.overtaken(session):
                self.acks.append((gone.stream_seq, gone.item[1].reply))
                self._quarantine(
                    gone.item[1],
                    "far_ahead",
                    f"seq {gone.seq} held {self.held.gap_timeout_s:.0f}s while the session "
                    "went on in order",
                )
            first = self.held.first_held(session)
            if first is None:
                continue
            sf = self.writer.get(session, 0)
            logger.error(
                "Session %s: seqs %d..%d never arrived; recording the gap",
                session,
                sf.last_seq + 1,
                first - 1,
            )
            self.writer.append_gap(sf, first)
            self._release(session, 0)
        if self.puller.pending == 0 and not self.held:
            # Only when caught up: a lagging archiver must not seal a session
            # whose next run is already in the stream (a live one would not
            # have); it seals on reading that run instead (writer.append_event).
            for sf in self.writer.due_for_seal(time.time_ns()):
                self.writer.seal(sf)
        await self.commit()
        if self.checkpoints is not None:  # after the commit: every line is fsynced
            await self.checkpoints.tick(self.writer.chains())
        await self.writer.compress_sealed()

    async def shutdown(self) -> None:
        # The last checkpoint while the lease is still ours: once it is given back,
        # another process may write this log.
        if self.checkpoints is not None and not self._paused:
            try:
                await self.commit()
                await self.checkpoints.final(self.writer.chains())
            except _BUS_ERRORS as exc:
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
