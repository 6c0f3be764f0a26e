"""The archiver's side of checkpoints: watch the durable heads, sign, append to the log, witness.

    start:   read the log (its last checkpoint, the state it records; a line
             a crash cut is dropped), catch up with the witness (publish what
             it lacks; if it is ahead, the log was rolled back: continue after
             the witness's head, never fork), finish a key rotation a crash
             interrupted, learn the heads on disk, sync the filesystem
    tick:    after each commit (every line fsynced): note the changed heads;
             every `checkpoint_interval_s` write a checkpoint
    shutdown: one last checkpoint

A checkpoint goes to the log (write + fsync) before the witness, so a crash
in between leaves one the witness lacks, published at the next start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.js import JetStreamContext

from consumers.archive import chain, checkpoint, merkle, signing, witness
from consumers.archive.checkpoint import Entry
from consumers.archive.files import (
    ArchiveCorrupt,
    SessionFile,
    fsync_dir,
    iter_archive,
    recover,
    session_of,
)

logger = logging.getLogger(__name__)

_KEEP_UNWITNESSED: Final = 10_000
"""Checkpoints kept in memory for a witness that is away (about a week at one a minute)."""


class Checkpointer:
    """Signed checkpoints of one archiver's session files (its partition of `root`)."""

    def __init__(
        self,
        root: Path,
        archive_id: str,
        key_file: Path,
        *,
        interval_s: float,
        js: JetStreamContext | None = None,
        replicas: int = 1,
        owns: Callable[[str], bool] = lambda session: True,
    ) -> None:
        self.root = root
        self.archive_id = archive_id
        self.log = root / checkpoint.log_name(archive_id)
        self.key_file = key_file
        self.interval_s = interval_s
        self._js = js
        self._replicas = replicas
        self._owns = owns
        self._key: Ed25519PrivateKey | None = None
        self._heads: dict[str, tuple[Entry, bytes]] = {}
        """Each session's last recorded entry and its leaf hash."""
        self._changed: set[str] = set()
        self._full = True
        self.seq = 0
        self._prev = ""
        self._next_due = 0.0
        self._unwitnessed: deque[tuple[int, bytes]] = deque(maxlen=_KEEP_UNWITNESSED)
        self._witness_after: int | None = None
        """Stream seq of this log's last witnessed checkpoint; None: ask the witness."""
        self._expected_key = ""

    # -- start -----------------------------------------------------------------------

    async def start(self, chains: Iterable[SessionFile]) -> None:
        """At the archiver's start, and again after a pause (another process may have written meanwhile)."""
        self._heads, self._changed, self._full = {}, set(), True
        self.seq, self._prev, self._expected_key = 0, "", ""
        self._unwitnessed.clear()
        self._witness_after = None
        loop = asyncio.get_running_loop()
        self._key = await loop.run_in_executor(None, signing.load_or_create, self.key_file)
        self._read_log()
        if self._js is not None:
            await witness.ensure_stream(self._js, self._replicas)
            await self._catch_up_witness()
        self._finish_rotation()
        self.observe(chains)
        self._learn_disk()
        # Heads read back from disk after a crash may still be in the page cache only.
        await loop.run_in_executor(None, os.sync)
        logger.info(
            "Checkpoints: %s, last #%d, signing key %s", self.log, self.seq, self.public_key
        )
        await self.write()

    @property
    def public_key(self) -> str:
        assert self._key is not None
        return signing.public_of(self._key)

    def _read_log(self) -> None:
        if not self.log.exists():
            return
        lines, torn = checkpoint.split_log(self.log.read_bytes())
        if torn:
            logger.warning("%s: cutting an unfinished last line (%d bytes)", self.log, len(torn))
            os.truncate(self.log, self.log.stat().st_size - len(torn))
        state: dict[str, Entry] = {}
        for no, raw in enumerate(lines, 1):
            try:
                cp = checkpoint.parse_line(no, raw)
            except checkpoint.MalformedCheckpoint as exc:
                logger.error("%s:%d: %s (run `agentcast verify`)", self.log, no, exc)
                continue
            checkpoint.apply(state, cp)
            self.seq, self._prev = cp.seq, cp.digest
            self._expected_key = cp.header.get("next_key") or cp.header["key"]
            self._unwitnessed.append((cp.seq, cp.witness_payload()))
        self._heads = {s: (e, e.leaf()) for s, e in state.items()}

    async def _catch_up_witness(self) -> None:
        """A witness ahead of the log means the log lost checkpoints: never fork the witness's chain."""
        assert self._js is not None
        try:
            got = await witness.last(self._js, self.archive_id)
        except witness.WitnessError as exc:
            logger.warning("Checkpoint witness unreachable (%r): publishing later", exc)
            return
        if got is not None:
            header, _ = checkpoint.parse_witness(got[1])
            seq = int(header["seq"])
            if seq > self.seq or (seq == self.seq and checkpoint.header_hash(header) != self._prev):
                logger.error(
                    "The checkpoint log %s ends at #%d but the witness holds #%d: the log was "
                    "rolled back or replaced. Continuing after the witness's #%d; "
                    "`agentcast verify --witness` reports it.",
                    self.log,
                    self.seq,
                    seq,
                    seq,
                )
                self.seq, self._prev = seq, checkpoint.header_hash(header)
                self._expected_key = header.get("next_key") or header["key"]
        await self._publish()

    def _finish_rotation(self) -> None:
        """A crash between a rotation's checkpoint and the key switch: switch now."""
        nxt = signing.next_path(self.key_file)
        if nxt.exists() and self._expected_key == signing.public_of(signing.load_private(nxt)):
            self._switch_key()
        if self._expected_key and self._expected_key != self.public_key:
            logger.error(
                "The archive key %s (%s) is not the one the checkpoint log expects (%s): "
                "keys change only by `agentcast archiver --rotate-key`; verify reports this",
                self.key_file,
                self.public_key,
                self._expected_key,
            )

    def _switch_key(self) -> None:
        nxt = signing.next_path(self.key_file)
        self._key = signing.load_private(nxt)
        os.replace(nxt, self.key_file)
        fsync_dir(self.key_file.parent)
        logger.warning("Archive signing key rotated to %s", self.public_key)

    def _learn_disk(self) -> None:
        """Session files this archiver wrote but no checkpoint records (a crash came first)."""
        for path in iter_archive(self.root):
            session = session_of(path)
            if session is None or session in self._heads or not self._owns(session):
                continue
            try:
                sf = recover(session, path)
            except (ArchiveCorrupt, chain.MalformedLine) as exc:
                logger.error("%s: not checkpointed: %s", path, exc)
                continue
            if sf.last_hash:
                self._note(sf)

    # -- running ---------------------------------------------------------------------

    def observe(self, chains: Iterable[SessionFile]) -> None:
        """Note the heads of the writer's chains; call only when every line is fsynced."""
        for sf in chains:
            known = self._heads.get(sf.session)
            changed = known is None or known[0].head != sf.last_hash
            if changed and sf.last_hash and self._owns(sf.session):
                self._note(sf)

    def _note(self, sf: SessionFile) -> None:
        e = Entry(
            session=sf.session,
            date=sf.path.parent.name,
            count=sf.count,
            last_seq=sf.last_seq,
            head=sf.last_hash,
        )
        self._heads[sf.session] = (e, e.leaf())
        self._changed.add(sf.session)

    async def tick(self, chains: Iterable[SessionFile]) -> None:
        """After a commit: note the heads; write a checkpoint when one is due."""
        self.observe(chains)
        if time.monotonic() >= self._next_due:
            await self.write()

    async def final(self, chains: Iterable[SessionFile]) -> None:
        """The shutdown checkpoint, right after the last commit."""
        self.observe(chains)
        await self.write()

    async def write(self) -> None:
        """Sign and append a checkpoint of every head noted, then hand it to the witness."""
        assert self._key is not None
        ordered = sorted(self._heads)
        leaves = [self._heads[s][1] for s in ordered]
        header: dict[str, Any] = {
            "v": checkpoint.VERSION,
            "archive": self.archive_id,
            "seq": self.seq + 1,
            "time": time.time_ns(),
            "prev": self._prev,
            "size": len(leaves),
            "root": merkle.root(leaves).hex(),
            "key": self.public_key,
        }
        nxt = signing.next_path(self.key_file)
        rotating = nxt.exists()
        if rotating:
            header["next_key"] = signing.public_of(signing.load_private(nxt))
        sig = signing.sign(self._key, chain.canonical(header))
        changed = ordered if self._full else sorted(self._changed)
        line = checkpoint.log_line(header, sig, self._full, [self._heads[s][0] for s in changed])
        await asyncio.get_running_loop().run_in_executor(None, _append, self.log, line)
        self.seq, self._prev = header["seq"], checkpoint.header_hash(header)
        self._changed.clear()
        self._full = False
        self._next_due = time.monotonic() + self.interval_s
        if rotating:
            self._switch_key()
        self._expected_key = self.public_key
        self._unwitnessed.append((self.seq, checkpoint.witness_payload(header, sig)))
        await self._publish()

    async def _publish(self) -> None:
        """Give the witness every checkpoint it lacks, in order; an outage only delays them."""
        if self._js is None or not self._unwitnessed:
            return
        try:
            if self._witness_after is None:
                got = await witness.last(self._js, self.archive_id)
                self._witness_after = got[0] if got else 0
                done = int(checkpoint.parse_witness(got[1])[0]["seq"]) if got else 0
                while self._unwitnessed and self._unwitnessed[0][0] <= done:
                    self._unwitnessed.popleft()
            while self._unwitnessed:
                payload = self._unwitnessed[0][1]
                self._witness_after = await witness.publish(
                    self._js, self.archive_id, payload, self._witness_after
                )
                self._unwitnessed.popleft()
        except witness.WitnessError as exc:
            logger.warning(
                "Checkpoint #%d not witnessed yet (%s: %s): kept in the log, published later",
                self._unwitnessed[0][0] if self._unwitnessed else self.seq,
                type(exc).__name__,
                exc,
            )
            self._witness_after = None


def _append(path: Path, line: bytes) -> None:
    new = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)  # a full disk: no half line for the next checkpoint to follow
            raise
    finally:
        os.close(fd)
    if new:
        fsync_dir(path.parent)
