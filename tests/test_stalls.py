"""A NATS stall longer than the lease TTL: the archiver and metrics processes wait, re-lease, go on."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from nats.js.errors import KeyNotFoundError

from agentcast.bus import ensure_streams
from agentcast.embedded import free_port
from agentcast.events import Event
from agentcast.progress import decode_snapshot
from agentcast.subjects import EVENTS_STREAM, SESSIONS_BUCKET
from tests.support.archive import all_sealed, archived_seqs
from tests.support.events import build_events, publish_events, simple_run, unique_session
from tests.support.nats import PrivateNats
from tests.support.roles import Role, cli, unique_name, wait_until

pytestmark = pytest.mark.timeout(150)

_TTL_S = 2.0
# Longer than the TTL (the key expires on the server) and than a request's 5 s timeout.
_STALL_S = 7.0


def _roles(nats: PrivateNats, tmp: Path) -> tuple[Role, Role]:
    url = nats.server.admin_url  # unique durable names: the roles run as admin here
    common = {
        "AGENTCAST_ARCHIVE_LEASE_TTL_S": str(_TTL_S),
        "AGENTCAST_METRICS_LEASE_TTL_S": str(_TTL_S),
        "AGENTCAST_CONSUMER_START_SEQ": "1",
    }
    archiver = Role(
        "archiver",
        ["--nats", url, "--data", str(tmp / "data"), "--dir", str(tmp / "archive")],
        {
            **common,
            "AGENTCAST_ARCHIVE_CONSUMER": unique_name("arc"),
            "AGENTCAST_SEAL_IDLE_S": "0.5",
        },
        tmp / "archiver.log",
        "Archiver ready",
    )
    metrics = Role(
        "metrics",
        ["--nats", url, "--data", str(tmp / "data"), "--metrics-port", str(free_port())],
        {
            **common,
            "AGENTCAST_METRICS_CONSUMER": unique_name("met"),
            "AGENTCAST_PROGRESS_INTERVAL_S": "0.05",
        },
        tmp / "metrics.log",
        "Metrics ready",
    )
    return archiver, metrics


async def _snapshot_seqs(nats: PrivateNats, sessions: list[str]) -> dict[str, int]:
    kv = await nats.nc.jetstream().key_value(SESSIONS_BUCKET)
    seqs: dict[str, int] = {}
    for session in sessions:
        try:
            entry = await kv.get(session)
        except KeyNotFoundError:
            continue
        seqs[session] = decode_snapshot(entry.value or b"").last_seq
    return seqs


async def test_a_stall_longer_than_the_lease_ttl_is_ridden_out_exactly_once(
    private_nats: PrivateNats, tmp_path: Path
) -> None:
    js = private_nats.nc.jetstream()
    archiver, metrics = _roles(private_nats, tmp_path)
    archiver.start()
    metrics.start()
    load: dict[str, list[Event]] = {}

    async def publish(n: int, prefix: str) -> None:
        for i in range(n):
            session = unique_session(prefix)
            load[session] = build_events(session, simple_run(2 + i % 5))
            await publish_events(js, load[session])

    try:
        await publish(20, "before")
        # More right before the stall: some of it is handled but not yet committed when it hits.
        await publish(10, "edge")
        server = private_nats.server.pid
        assert server is not None
        os.kill(server, signal.SIGSTOP)
        try:
            await asyncio.sleep(_STALL_S)
        finally:
            os.kill(server, signal.SIGCONT)
        for role in (archiver, metrics):
            await wait_until(
                lambda r=role: "paused" in r.output() and "resumed after" in r.output(),  # type: ignore[misc]
                60,
                f"{role.cmd[3]} to lose its lease and recover",
                interval=0.2,
            )
        await publish(20, "after")
        # A follow-up run of a session from before the stall continues its chain.
        first = next(iter(load))
        load[first] += build_events(first, simple_run(2), run=2, first_seq=len(load[first]) + 1)
        await publish_events(js, load[first][-len(simple_run(2)) :])
        want = {s: list(range(1, len(e) + 1)) for s, e in load.items()}
        root = tmp_path / "archive"

        async def caught_up() -> bool:
            snaps = await _snapshot_seqs(private_nats, list(load))
            return archived_seqs(root) == want and snaps == {s: len(e) for s, e in load.items()}

        for _ in range(300):  # bounded: about 60 s
            if await caught_up():
                break
            await asyncio.sleep(0.2)
        assert archived_seqs(root) == want, "every event archived exactly once, in seq order"
        assert await _snapshot_seqs(private_nats, list(load)) == {
            s: len(e) for s, e in load.items()
        }
        assert archiver.proc is not None and archiver.proc.poll() is None, archiver.output()[-3000:]
        assert metrics.proc is not None and metrics.proc.poll() is None, metrics.output()[-3000:]
        assert archiver.starts == 1 and metrics.starts == 1
        # Sealing runs on the archiver's 1 s tick once a run has been idle `seal_idle_s`.
        await wait_until(lambda: all_sealed(root), 30, "every ended session sealed")
    finally:
        codes = (archiver.stop(), metrics.stop())
    assert codes == (0, 0), (archiver.output()[-3000:], metrics.output()[-3000:])
    verified = await cli("verify", str(tmp_path / "archive"))
    assert verified.returncode == 0, verified.stdout[-2000:]
    assert f"OK: {len(load)} files" in verified.stdout


async def test_a_paused_archiver_whose_lease_was_taken_waits_for_it_and_never_writes_meanwhile(
    private_nats: PrivateNats, tmp_path: Path
) -> None:
    """The archiver itself stalls (a VM freeze): a standby on another disk takes over meanwhile."""
    js = private_nats.nc.jetstream()
    durable = unique_name("arc")
    roles = []
    for name in ("first", "standby"):
        (tmp_path / name).mkdir()
        role, _ = _roles(private_nats, tmp_path / name)
        role.env["AGENTCAST_ARCHIVE_CONSUMER"] = durable
        roles.append(role)
    first, standby = roles
    load: dict[str, list[Event]] = {}

    async def publish(prefix: str) -> list[str]:
        sessions = [unique_session(prefix) for _ in range(10)]
        for session in sessions:
            load[session] = build_events(session, simple_run(3))
            await publish_events(js, load[session])
        return sessions

    async def acked() -> bool:
        last = (await js.stream_info(EVENTS_STREAM)).state.last_seq
        info = await js.consumer_info(EVENTS_STREAM, durable)
        return info.ack_floor.stream_seq == last

    def want(sessions: list[str]) -> dict[str, list[int]]:
        return {s: list(range(1, len(load[s]) + 1)) for s in sessions}

    first.start()
    try:
        before = await publish("before")
        for _ in range(200):  # bounded: about 40 s
            if await acked():
                break
            await asyncio.sleep(0.2)
        assert archived_seqs(tmp_path / "first" / "archive") == want(before)
        assert first.proc is not None
        os.kill(first.proc.pid, signal.SIGSTOP)
        try:
            standby.start()  # takes the lease once it has expired
            middle = await publish("middle")
            for _ in range(200):
                if await acked():
                    break
                await asyncio.sleep(0.2)
        finally:
            os.kill(first.proc.pid, signal.SIGCONT)
        await wait_until(
            lambda: "waits for its lease" in first.output(), 30, "the first to wait", interval=0.2
        )
        await wait_until(
            lambda: all_sealed(tmp_path / "standby" / "archive"), 30, "the standby's seals"
        )
        assert standby.stop() == 0, standby.output()[-3000:]
        await wait_until(
            lambda: "resumed after" in first.output(), 30, "the first to resume", interval=0.2
        )
        after = await publish("after")
        for _ in range(200):
            if await acked():
                break
            await asyncio.sleep(0.2)
        assert first.proc.poll() is None and first.starts == 1
        await wait_until(lambda: all_sealed(tmp_path / "first" / "archive"), 30, "the seals")
    finally:
        codes = (first.stop(), standby.stop())
    assert codes == (0, 0), first.output()[-3000:]
    # Each event in exactly one archive: the paused one wrote nothing while the standby held it.
    assert archived_seqs(tmp_path / "first" / "archive") == want(before + after)
    assert archived_seqs(tmp_path / "standby" / "archive") == want(middle)
    for root in (tmp_path / "first" / "archive", tmp_path / "standby" / "archive"):
        verified = await cli("verify", str(root))
        assert verified.returncode == 0, verified.stdout[-2000:]


async def test_a_role_starting_during_a_stall_waits_for_jetstream_rather_than_exiting(
    private_nats: PrivateNats,
) -> None:
    """Every role ensures the streams as it starts; a JetStream that does not answer within
    the API timeout (a stalled server, a cluster still electing) is asked again."""
    server = private_nats.server.pid
    assert server is not None
    js = private_nats.nc.jetstream()
    os.kill(server, signal.SIGSTOP)
    try:
        ensuring = asyncio.create_task(ensure_streams(js, private_nats.settings))
        await asyncio.sleep(6.5)  # past one JetStream API timeout (5 s)
        assert not ensuring.done(), ensuring  # still asking, not failed
    finally:
        os.kill(server, signal.SIGCONT)
    sessions = await asyncio.wait_for(ensuring, 60)
    assert (await js.stream_info(EVENTS_STREAM)).config.name == EVENTS_STREAM
    assert (await sessions.status()).bucket == SESSIONS_BUCKET
