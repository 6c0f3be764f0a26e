"""The archive's disk fills up or fails: the archiver stops acking, says so, and resumes without loss.

The archive lives on a small tmpfs of the test's own (mounted here: the suite
runs as root in CI; without the right to mount, the test is skipped, saying
so). A filler file takes the last free byte while events keep coming; once
it is deleted, every event is archived exactly once and the files verify.
An injected write error (EIO half-way through a flush) needs no root.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from nats.js import JetStreamContext

from agentcast.subjects import EVENTS_STREAM
from consumers.archive import writer as writer_module
from consumers.archive.files import iter_archive
from consumers.archive.writer import ArchiveUnwritable
from tests.support.archive import append, writer
from tests.support.chaos import Stoppable, Tally, archive_tally, archiver, settle, wait_for
from tests.support.events import build_events, publish_events, simple_run, unique_session
from tests.support.nats import PrivateNats
from tests.support.roles import Role, cli

pytestmark = pytest.mark.timeout(180)

_DISK = "4m"
_DURABLE = "agentcast-archiver"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs at tmp_path/disk, unmounted at the end."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={_DISK},mode=0755", "tmpfs", str(mount)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip()}): needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> int:
    """Write zeros to `path` until the filesystem is full; the bytes written."""
    chunk = b"\0" * 65536
    written = 0
    with path.open("wb", buffering=0) as fh:
        while True:
            try:
                written += fh.write(chunk) or 0
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
        for size in (4096, 512, 1):  # the last few bytes too
            with contextlib.suppress(OSError):
                while True:
                    written += fh.write(b"\0" * size) or 0
    return written


def _metric(role: Role, name: str) -> float:
    port = role.cmd[role.cmd.index("--metrics-port") + 1]
    total = 0.0
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _acked_to(js: JetStreamContext) -> tuple[int, int]:
    info = await js.consumer_info(EVENTS_STREAM, _DURABLE)
    last = (await js.stream_info(EVENTS_STREAM)).state.last_seq
    return info.ack_floor.stream_seq, last


async def test_archive_disk_full_stops_acks_says_so_and_resumes_without_loss(
    private_nats: PrivateNats, tmp_path: Path, small_disk: Path, procs: list[Stoppable]
) -> None:
    js = private_nats.nc.jetstream()
    role = archiver(
        private_nats.server, tmp_path, AGENTCAST_ARCHIVE_DIR=str(small_disk / "archive"),
        AGENTCAST_CHECKPOINT_INTERVAL_S="1",
    )  # fmt: skip
    role.cmd[role.cmd.index("--dir") + 1] = str(small_disk / "archive")
    procs.append(role)
    await asyncio.to_thread(role.start)
    load: dict[str, int] = {}

    async def publish(prefix: str, sessions: int, n_text: int) -> None:
        for _ in range(sessions):
            session = unique_session(prefix)
            events = build_events(session, simple_run(n_text))
            await publish_events(js, events)
            load[session] = len(events)

    async def all_acked() -> bool:
        floor, last = await _acked_to(js)
        return floor == last

    await publish("before", 20, 20)
    await wait_for(all_acked, 60, "the archiver to ack what came before the disk filled")
    filler = small_disk / "filler"
    filled = await asyncio.to_thread(_fill, filler)
    await publish("full", 30, 40)  # ~150 KB of lines that cannot be written
    await wait_for(
        lambda: asyncio.to_thread(lambda: "Archive unwritable" in role.output()), 60, "the log"
    )
    assert await asyncio.to_thread(_metric, role, "agentcast_archive_write_blocked") == 1
    errors = await asyncio.to_thread(_metric, role, "agentcast_archive_write_errors_total")
    assert errors >= 1
    floor, last = await _acked_to(js)
    assert floor < last, "nothing written, nothing acked"
    blocked_floor = floor
    await asyncio.sleep(3)  # retries meanwhile: still nothing acked, the process stays up
    assert (await _acked_to(js))[0] == blocked_floor
    assert role.proc is not None and role.proc.poll() is None, role.output()[-3000:]

    os.unlink(filler)  # space returns
    await publish("after", 10, 10)
    await wait_for(all_acked, 60, "every event archived and acked once space returned")
    await wait_for(
        lambda: asyncio.to_thread(lambda: "Archive writable again" in role.output()), 30, "the log"
    )
    assert await asyncio.to_thread(_metric, role, "agentcast_archive_write_blocked") == 0
    assert role.stop() == 0, role.output()[-3000:]
    tally: Tally = archive_tally(small_disk / "archive")
    verified = await cli("verify", str(small_disk / "archive"))
    assert verified.returncode == 0, verified.stdout[-3000:]
    settle(
        "archive disk full", load, [tally],
        disk=_DISK, filler_bytes=filled, write_errors=int(errors), acked_while_full=0,
    )  # fmt: skip


async def test_a_flush_that_fails_half_way_leaves_no_half_line_and_retries_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An injected EIO after half a batch (no root needed): the files are cut back, lines kept."""
    sessions = [unique_session("eio") for _ in range(6)]  # > 4 files: the syncfs path too
    batches = [build_events(s, simple_run(8)) for s in sessions]
    reference, broken = writer(tmp_path / "ref"), writer(tmp_path / "broken")
    real = writer_module._write_all
    calls = 0

    def half_then_eio(jobs: list[tuple[int, bytes]], sync: bool = True) -> None:
        nonlocal calls
        calls += 1
        fd, data = jobs[0]
        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.EIO, "injected")

    try:
        for w in (reference, broken):
            for events in batches:
                append(w, events[:5])
        await reference.flush()
        await broken.flush()
        for w in (reference, broken):
            for events in batches:
                append(w, events[5:], first_cursor=6)
        await reference.flush()
        monkeypatch.setattr(writer_module, "_write_all", half_then_eio)
        for _ in range(2):  # twice: a retry that fails again keeps the lines too
            with pytest.raises(ArchiveUnwritable, match="EIO"):
                await broken.flush()
        assert broken.pending_lines > 0
        monkeypatch.setattr(writer_module, "_write_all", real)
        await broken.flush()
    finally:
        reference.close()
        broken.close()
    assert calls == 2
    got = {p.name: p.read_bytes() for p in iter_archive(tmp_path / "broken")}
    want = {p.name: p.read_bytes() for p in iter_archive(tmp_path / "ref")}
    assert got == want and len(got) == len(sessions)
