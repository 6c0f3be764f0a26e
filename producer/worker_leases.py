"""Worker heartbeats and running-session records: how the survivors find a dead worker's runs.

Each worker renews its id in KV `agentcast_workers`, whose TTL is a third of
`worker_lost_after_s`: the key vanishes once a worker stops renewing it
(kill -9, machine lost, network cut). While a worker holds a session it keeps
a record in KV `agentcast_running` (key: the session, value: its worker id),
created before the run is claimed and deleted when the session is released.

Every worker scans the records, at start and then every quarter TTL. A record
whose worker's heartbeat has stayed missing for half a TTL, while the scanner's
own heartbeat was renewed (so the scanner is not the one cut off), and whose
session's control subject nobody answers, belongs to a lost worker: its open
run is closed (`close_lost`, the session claim with the expected last subject
sequence, so of several survivors exactly one writes the `run.failed`), and
the record is deleted. Worst case from death to close: TTL + 4 scans = two
thirds of the bound, the rest is slack for a loaded machine.

A worker that was cut off for long enough to be presumed lost checks its
records when its heartbeat goes through again: one that is gone is put back
(so a later death is still found), one that another worker holds now is given
up (`taken_over`). Its events are refused anyway: every publish expects the
session's last stream sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Awaitable, Callable

import msgspec
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from agentcast.bus import key_value
from agentcast.codec import encode, json_decoder_of
from agentcast.control import ControlRequest
from agentcast.settings import Settings
from agentcast.subjects import ctl_subject

logger = logging.getLogger(__name__)

WORKERS_BUCKET = "agentcast_workers"
RUNNING_BUCKET = "agentcast_running"
_SCAN_TIMEOUT_S = 10.0
_MIN_BOUND_S = 3.0
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

CloseLost = Callable[[str], Awaitable[None]]
"""Closes the session's open run (if any) as worker_lost."""
TakenOver = Callable[[str], None]
"""Gives up a session this worker held: another worker has it now."""


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True):
    host: str
    pid: int
    started_at: float


class RunningRecord(msgspec.Struct, frozen=True, kw_only=True):
    worker: str
    since: float


_beat_decoder = json_decoder_of(Heartbeat)
_record_decoder = json_decoder_of(RunningRecord)


def new_worker_id() -> str:
    """Unique per process: a restarted worker is a new worker, its predecessor lost."""
    host = _KEY_UNSAFE.sub("-", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"


class WorkerLeases:
    """This worker's heartbeat and records, and the scan for lost workers' runs."""

    def __init__(
        self, nc: Client, settings: Settings, close_lost: CloseLost, taken_over: TakenOver
    ) -> None:
        self.worker_id = new_worker_id()
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream()
        self._settings = settings
        self._close_lost = close_lost
        self._taken_over = taken_over
        self._held: dict[str, int] = {}
        """Session -> revision of this worker's record."""
        # Below 3 s the heartbeat TTL would be shorter than a loaded machine's hiccups.
        self._ttl = max(settings.worker_lost_after_s, _MIN_BOUND_S) / 3
        self._workers: KeyValue | None = None
        self._running: KeyValue | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started_at = time.time()
        self._beat_ok_at = 0.0
        self._reconnects = nc.stats["reconnects"]
        self._reassert_due = False
        self._missing_since: dict[str, float] = {}
        """Worker id -> when this worker first saw its heartbeat missing."""

    @property
    def interval_s(self) -> float:
        return self._ttl / 4

    async def start(self) -> None:
        replicas = self._settings.replicas
        self._workers = await key_value(
            self._js, WORKERS_BUCKET, "agentcast worker heartbeats", replicas, self._ttl
        )
        self._running = await key_value(
            self._js, RUNNING_BUCKET, "agentcast sessions and the worker running each", replicas
        )
        actual = (await self._workers.status()).ttl
        if actual and abs(actual - self._ttl) > 0.01:
            # The bucket was made by a worker with another bound: its TTL rules.
            logger.warning(
                "bucket %s has TTL %.1fs, not %.1fs (worker_lost_after_s %.1f): using it",
                WORKERS_BUCKET,
                actual,
                self._ttl,
                self._settings.worker_lost_after_s,
            )
            self._ttl = actual
        await self._beat()
        self._tasks = [
            asyncio.create_task(self._every(self._beat)),
            asyncio.create_task(self._every(self.scan, first=True)),
        ]
        logger.info("Worker %s: heartbeat every %.2fs", self.worker_id, self.interval_s)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._workers is not None:
            with contextlib.suppress(Exception):
                await self._workers.delete(self.worker_id)

    # -- this worker's records ---------------------------------------------------

    async def hold(self, session: str) -> bool:
        """Record that this worker holds `session`; False if another worker does."""
        assert self._running is not None
        record = encode(RunningRecord(worker=self.worker_id, since=time.time()))
        try:
            self._held[session] = await self._running.create(session, record)
        except KeyWrongLastSequenceError:
            return False  # held elsewhere; if that worker is lost, a scan frees it
        return True

    async def release(self, session: str) -> None:
        """Delete our record, unless someone replaced it since (then it is theirs)."""
        revision = self._held.pop(session, None)
        if revision is not None:
            await self._delete(session, revision)

    async def _delete(self, session: str, revision: int) -> None:
        assert self._running is not None
        try:
            await self._running.delete(session, last=revision)
        except (NatsError, TimeoutError) as exc:
            logger.debug("session %s: record not deleted (%r)", session, exc)

    async def _reassert(self) -> None:
        """After a gap in our heartbeat: put back records a scan deleted, give up taken ones."""
        assert self._running is not None
        for session, revision in list(self._held.items()):
            try:
                entry = await self._running.get(session)
            except KeyNotFoundError:
                entry = None
            if entry is not None and entry.revision == revision:
                continue
            if entry is None and session in self._held:
                record = encode(RunningRecord(worker=self.worker_id, since=time.time()))
                with contextlib.suppress(KeyWrongLastSequenceError):
                    self._held[session] = await self._running.create(session, record)
                    logger.warning("session %s: record put back after a gap", session)
                    continue
            logger.error("session %s: taken over while this worker was cut off", session)
            self._held.pop(session, None)
            self._taken_over(session)

    # -- the scan ------------------------------------------------------------------

    async def scan(self) -> None:
        """Close the runs of every worker found lost; free their records."""
        records = await asyncio.wait_for(self._records(), _SCAN_TIMEOUT_S)
        now = time.monotonic()
        alive: dict[str, bool] = {}
        for session, (record, revision) in records.items():
            worker = record.worker
            if worker == self.worker_id:
                continue
            if worker not in alive:
                alive[worker] = await self._beating(worker)
            if alive[worker]:
                self._missing_since.pop(worker, None)
                continue
            since = self._missing_since.setdefault(worker, now)
            if now - since < self._ttl / 2 or self._beat_ok_at <= since:
                continue  # not missing long enough, or we may be the one cut off
            if await self.answers(session):
                continue  # its conversation still answers: alive after all
            logger.warning("session %s: worker %s is lost, closing its run", session, worker)
            await self._close_lost(session)
            await self._delete(session, revision)
        for worker in set(self._missing_since) - {r.worker for r, _ in records.values()}:
            del self._missing_since[worker]

    async def _records(self) -> dict[str, tuple[RunningRecord, int]]:
        assert self._running is not None
        found: dict[str, tuple[RunningRecord, int]] = {}
        # One short-lived consumer per scan: let the server drop it soon after.
        watcher = await self._running.watchall(
            ignore_deletes=True, inactive_threshold=max(5.0, 2 * self.interval_s)
        )
        try:
            async for entry in watcher:
                if entry is None:  # the end of what the bucket holds now
                    break
                if entry.value:
                    with contextlib.suppress(msgspec.DecodeError):
                        found[entry.key] = (_record_decoder.decode(entry.value), entry.revision)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        return found

    async def _beating(self, worker: str) -> bool:
        assert self._workers is not None
        try:
            await self._workers.get(worker)
        except KeyNotFoundError:  # expired (TTL) or deleted at a clean stop
            return False
        return True

    async def answers(self, session: str) -> bool:
        """Whether some worker's conversation answers the session's control subject."""
        try:
            await self._nc.request(
                ctl_subject(session), encode(ControlRequest(op="status")), timeout=2
            )
        except NoRespondersError:
            return False
        except (TimeoutError, NatsTimeoutError):
            return True  # someone is subscribed but slow: do not steal the session
        return True

    async def _beat(self) -> None:
        assert self._workers is not None
        beat = Heartbeat(host=socket.gethostname(), pid=os.getpid(), started_at=self._started_at)
        await self._workers.put(self.worker_id, encode(beat))
        now, previous = time.monotonic(), self._beat_ok_at
        self._beat_ok_at = now
        reconnects = self._nc.stats["reconnects"]
        # Our key may have expired meanwhile; and after any reconnect a scan that
        # judged us by a stale heartbeat may have freed our records, however short the cut.
        # Due until it has run once without error: just after a reconnect JetStream may
        # not answer yet, and a reassertion that failed must not be forgotten.
        if (previous and now - previous > self._ttl / 2) or reconnects != self._reconnects:
            self._reassert_due = True
        self._reconnects = reconnects
        if self._reassert_due:
            await self._reassert()
            self._reassert_due = False

    async def _every(self, step: Callable[[], Awaitable[None]], *, first: bool = False) -> None:
        if not first:
            await asyncio.sleep(self.interval_s)
        while True:
            try:
                await step()
            except Exception as exc:  # noqa: BLE001 - NATS reconnecting: the next round tries again
                logger.debug("%s failed: %r", getattr(step, "__name__", step), exc)
            await asyncio.sleep(self.interval_s)
