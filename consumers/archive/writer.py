"""Session files: append chained lines, fsync in batches, seal, compress, reopen.

Single-threaded by design: the archive loop calls it between JetStream
batches. Only the blocking syscalls (write, fdatasync or syncfs, compression)
go to a thread pool, several files at a time, which is what makes fsync
batching pay.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from agentcast.codec import encode
from agentcast.cursor import format_cursor
from agentcast.events import TERMINAL_TYPES
from consumers.archive import chain
from consumers.archive.files import (
    PLAIN,
    SEALED,
    ArchiveCorrupt,
    SessionFile,
    compress,
    date_of,
    fsync_dir,
    iter_archive,
    read_bytes,
    recover,
    session_of,
    write_durably,
)

logger = logging.getLogger(__name__)

_FLAGS: Final = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
_THREADS: Final = 8
# Beyond this many files in one flush, one syncfs(2) replaces a fdatasync each:
# on ext4 a fdatasync of a small append costs ~60 µs of CPU, a syncfs of the
# whole filesystem ~0.5 ms, so live traffic (100 sessions touched per flush)
# pays one syscall per flush instead of one per session. syncfs (Linux >= 5.8)
# reports the filesystem's writeback errors, so an ack still follows durability.
_FDATASYNC_MAX: Final = 4
_syncfs: Final = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
REJECTED: Final = "_rejected.jsonl"
"""Messages that cannot join a chain (not an envelope, or a seq after its gap was recorded)."""
QUARANTINE: Final = "_quarantine.jsonl"
"""Suspected forgeries: a repeated seq that is another message, a far-ahead seq overtaken."""


class ArchiveUnwritable(Exception):
    """The archive's disk refused a write or an fsync (full, read-only, failing): nothing was kept."""

    def __init__(self, cause: OSError) -> None:
        self.cause = cause
        self.code = errno.errorcode.get(cause.errno or 0, "EUNKNOWN")
        super().__init__(f"{cause.strerror or cause} ({self.code})")


class ArchiveWriter:
    """Owns every session file under `root` for one archiver process."""

    def __init__(
        self, root: Path, *, seal_idle_s: float, compress_sealed: bool, open_files: int
    ) -> None:
        self.root = root
        self._seal_idle_ns = int(seal_idle_s * 1e9)
        self._compress = compress_sealed
        self._open_limit = max(8, open_files)
        self._index: dict[str, Path] = {}
        self._live: dict[str, SessionFile] = {}
        self._open: OrderedDict[str, SessionFile] = OrderedDict()
        self._dirty: dict[str, SessionFile] = {}
        self._ended: set[str] = set()
        self._rejected: list[bytes] = []
        self._rejected_fd: int | None = None
        self._quarantined: list[bytes] = []
        self._quarantine_fd: int | None = None
        self.quarantined = 0
        self.pending_lines = 0
        self._pool = ThreadPoolExecutor(_THREADS, thread_name_prefix="archive-io")

    # -- startup -------------------------------------------------------------------

    def scan(self) -> None:
        """Index every session file; recover the open (unsealed) chains."""
        self.root.mkdir(parents=True, exist_ok=True)
        for path in iter_archive(self.root):
            session = session_of(path)
            assert session is not None
            other = self._index.get(session)
            self._index[session] = self._settle(other, path) if other else path
        for leftover in self.root.glob("*/*.tmp"):
            leftover.unlink()
        for session, path in self._index.items():
            if path.name.endswith(PLAIN):
                sf = recover(session, path)
                self._live[session] = sf
                if sf.ended and not sf.sealed:
                    self._ended.add(session)

    @staticmethod
    def _settle(a: Path, b: Path) -> Path:
        """Both `x.jsonl` and `x.jsonl.zst`: a crash during compress or reopen; keep the longer."""
        plain, packed = (a, b) if a.name.endswith(PLAIN) else (b, a)
        if plain.parent != packed.parent:
            raise ArchiveCorrupt(plain, f"the session also has a file in {packed.parent}")
        if not read_bytes(plain).startswith(read_bytes(packed)):
            raise ArchiveCorrupt(plain, f"differs from {packed.name}")
        packed.unlink()
        return plain

    def chains(self) -> Iterable[SessionFile]:
        """The chains in memory (open, or sealed and not yet forgotten): their heads for checkpoints."""
        return self._live.values()

    # -- appending -------------------------------------------------------------------

    def get(self, session: str, ts: int) -> SessionFile:
        """The chain of a session: known, recovered from disk, or new (dated by `ts`)."""
        sf = self._live.get(session)
        if sf is not None:
            return sf
        path = self._index.get(session)
        if path is not None:
            sf = recover(session, path)
        else:
            day = self.root / date_of(ts)
            sf = SessionFile(session=session, path=day / f"{session}{PLAIN}")
        self._live[session] = sf
        return sf

    def append_event(self, sf: SessionFile, envelope: dict[str, Any], stream_seq: int) -> None:
        """Chain one event (the decoded envelope) after the session's last line."""
        ts = envelope["ts"]
        if sf.ended and not sf.sealed and ts - sf.last_ts >= self._seal_idle_ns:
            # The session was idle long enough before this run to be sealed, by
            # producer time: seal now, so a late archiver writes what a live one did.
            self.seal(sf)
        if sf.sealed:
            self._reopen(sf)
        envelope.pop("hash", None)
        envelope["cursor"] = format_cursor(stream_seq)
        self._append(sf, envelope)
        sf.last_seq = envelope["seq"]
        sf.last_cursor = stream_seq
        sf.last_ts = ts
        sf.count += 1
        sf.ended = envelope.get("type") in TERMINAL_TYPES
        if sf.ended:
            self._ended.add(sf.session)
        else:
            self._ended.discard(sf.session)

    def append_gap(self, sf: SessionFile, next_seq: int) -> None:
        """Record that seqs after the last one up to `next_seq - 1` never arrived."""
        if sf.sealed:
            self._reopen(sf)
        self._append(sf, chain.gap_record(sf.session, sf.last_seq, next_seq))
        sf.gaps.append((sf.last_seq, next_seq))
        sf.last_seq = next_seq - 1

    def seal(self, sf: SessionFile) -> None:
        """Close the chain with a line recording its event count and last hash."""
        self._append(sf, chain.seal_record(sf.session, sf.count, sf.last_seq, sf.last_hash))
        sf.sealed = True
        self._ended.discard(sf.session)

    def reject(self, subject: str, stream_seq: int, data: bytes, reason: str) -> None:
        """Keep a message that cannot be chained, so that nothing is dropped silently."""
        logger.warning("Rejected message %d on %s: %s", stream_seq, subject, reason)
        self._rejected.append(_set_aside(subject, stream_seq, data, reason))
        self.pending_lines += 1

    def quarantine(self, subject: str, stream_seq: int, data: bytes, reason: str) -> None:
        """Keep a suspected forgery apart from the chains, loudly: never kept silently, never dropped."""
        logger.error("Quarantined message %d on %s: %s", stream_seq, subject, reason)
        self._quarantined.append(_set_aside(subject, stream_seq, data, reason))
        self.quarantined += 1
        self.pending_lines += 1

    def _append(self, sf: SessionFile, record: dict[str, Any]) -> None:
        canonical = chain.canonical(record)
        sf.last_hash = chain.link(sf.last_hash, canonical)
        sf.pending.append(chain.frame(canonical, sf.last_hash))
        self._dirty[sf.session] = sf
        self.pending_lines += 1

    def _reopen(self, sf: SessionFile) -> None:
        """A later run continues a sealed chain (after its seal line), never forks it."""
        if sf.compressed:
            plain = sf.path.with_name(f"{sf.session}{PLAIN}")
            write_durably(plain, read_bytes(sf.path))
            sf.path.unlink()
            fsync_dir(plain.parent)
            sf.path = plain
            self._index[sf.session] = plain
        sf.sealed = False

    # -- sealing ---------------------------------------------------------------------

    def due_for_seal(self, now_ns: int) -> list[SessionFile]:
        """Sessions whose run has ended and that have been idle long enough (producer time)."""
        return [
            sf
            for s in self._ended
            if (sf := self._live[s]).last_ts and now_ns - sf.last_ts >= self._seal_idle_ns
        ]

    async def compress_sealed(self) -> None:
        """Compress the sealed files (after their seal is durable) and forget them."""
        sealed = [sf for sf in self._live.values() if sf.sealed and not sf.pending]
        for sf in sealed:
            if self._compress and not sf.compressed:
                self._close(sf)
                await asyncio.get_running_loop().run_in_executor(self._pool, self._pack, sf)
            self._close(sf)
            self._index[sf.session] = sf.path
            del self._live[sf.session]

    @staticmethod
    def _pack(sf: SessionFile) -> None:
        packed = sf.path.with_name(f"{sf.session}{SEALED}")
        write_durably(packed, compress(sf.path.read_bytes()))
        sf.path.unlink()
        fsync_dir(packed.parent)
        sf.path = packed

    # -- durability ------------------------------------------------------------------

    async def flush(self) -> None:
        """Write every pending line and fsync each touched file (and new directories).

        All or nothing: when a write or an fsync fails (a full or unwritable
        disk), every file touched is cut back to its length before this flush
        and the lines stay pending, so a later flush writes them once, whole.
        Raises ArchiveUnwritable then.
        """
        if not self._dirty and not self._rejected and not self._quarantined:
            return
        dirs: set[Path] = set()
        try:
            for sf in self._dirty.values():
                if sf.fd is None:
                    dirs |= self._open_fd(sf)
                else:
                    self._open.move_to_end(sf.session)
            if self._rejected and self._rejected_fd is None:
                self._rejected_fd = os.open(self.root / REJECTED, _FLAGS, 0o644)
                dirs.add(self.root)
            if self._quarantined and self._quarantine_fd is None:
                self._quarantine_fd = os.open(self.root / QUARANTINE, _FLAGS, 0o644)
                dirs.add(self.root)
        except OSError as exc:
            raise ArchiveUnwritable(exc) from exc
        jobs: list[tuple[int, bytes]] = []
        for sf in self._dirty.values():
            assert sf.fd is not None
            jobs.append((sf.fd, b"".join(sf.pending)))
        if self._rejected:
            assert self._rejected_fd is not None
            jobs.append((self._rejected_fd, b"".join(self._rejected)))
        if self._quarantined:
            assert self._quarantine_fd is not None
            jobs.append((self._quarantine_fd, b"".join(self._quarantined)))
        sizes = [os.fstat(fd).st_size for fd, _ in jobs]
        loop = asyncio.get_running_loop()
        try:
            if len(jobs) > _FDATASYNC_MAX and _syncfs is not None:
                await loop.run_in_executor(self._pool, _write_then_syncfs, jobs)
            else:
                groups = [jobs[i::_THREADS] for i in range(min(_THREADS, len(jobs)))]
                done = await asyncio.gather(
                    *(loop.run_in_executor(self._pool, _write_all, g) for g in groups),
                    return_exceptions=True,
                )
                if failed := next((e for e in done if isinstance(e, BaseException)), None):
                    raise failed
            for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
                await loop.run_in_executor(self._pool, fsync_dir, d)
        except OSError as exc:
            await loop.run_in_executor(self._pool, _cut_back, jobs, sizes)
            raise ArchiveUnwritable(exc) from exc
        for sf in self._dirty.values():
            sf.pending = []
        self._dirty = {}
        self._rejected = []
        self._quarantined = []
        self.pending_lines = 0
        self._trim_open()

    def _open_fd(self, sf: SessionFile) -> set[Path]:
        dirs: set[Path] = set()
        if not sf.path.parent.exists():
            sf.path.parent.mkdir(parents=True)
            dirs.add(self.root)
        if not sf.path.exists():
            dirs.add(sf.path.parent)
            self._index[sf.session] = sf.path
        sf.fd = os.open(sf.path, _FLAGS, 0o644)
        self._open[sf.session] = sf
        return dirs

    def _trim_open(self) -> None:
        while len(self._open) > self._open_limit:
            _, sf = self._open.popitem(last=False)
            self._close(sf)

    def _close(self, sf: SessionFile) -> None:
        if sf.fd is not None:
            os.close(sf.fd)
            sf.fd = None
        self._open.pop(sf.session, None)

    def close(self) -> None:
        for sf in list(self._open.values()):
            self._close(sf)
        for fd in (self._rejected_fd, self._quarantine_fd):
            if fd is not None:
                os.close(fd)
        self._rejected_fd = self._quarantine_fd = None
        self._pool.shutdown(wait=True)


def _write_all(jobs: list[tuple[int, bytes]], sync: bool = True) -> None:
    for fd, data in jobs:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fdatasync(fd)


def _cut_back(jobs: list[tuple[int, bytes]], sizes: list[int]) -> None:
    """Undo a failed flush: each file back to its length before it (a cut needs no space)."""
    for (fd, _), size in zip(jobs, sizes, strict=True):
        os.ftruncate(fd, size)


def _write_then_syncfs(jobs: list[tuple[int, bytes]]) -> None:
    """Write every file, then make the whole filesystem durable with one syscall."""
    _write_all(jobs, sync=False)
    assert _syncfs is not None
    if _syncfs(jobs[0][0]) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"syncfs: {os.strerror(err)}")


def _set_aside(subject: str, stream_seq: int, data: bytes, reason: str) -> bytes:
    """A line of `_rejected.jsonl` or `_quarantine.jsonl`: the message as it came, and why."""
    record = {
        "cursor": format_cursor(stream_seq),
        "subject": subject,
        "reason": reason,
        "payload": data.decode("utf-8", "replace"),
    }
    return encode(record) + b"\n"
