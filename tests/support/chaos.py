"""The chaos suite's shared parts: counts per client and consumer, the stream's truth, the roles.

Every chaos test ends the same way: what JetStream stored per session is the
truth ("sent": the producers' acked events, checked to be seqs 1..n), and each
client and consumer is a `Tally` of the seqs it received per session. `settle()`
turns them into rows (received, lost, duplicated, out of order), prints them,
appends them to `$AGENTCAST_CHAOS_COUNTS` (JSON lines, for tests/chaos/README.md)
and asserts that nothing was lost and nothing came twice.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgspec
import nats.errors
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyNotFoundError, ServiceUnavailableError

from agentcast.codec import decode_event
from agentcast.embedded import free_port
from agentcast.events import Event
from agentcast.progress import ProgressSnapshot, decode_snapshot
from agentcast.subjects import EVENTS_ALL, EVENTS_STREAM, SESSIONS_BUCKET
from tests.support.archive import archived_seqs
from tests.support.gateway import GatewayProcess
from tests.support.progress import snapshots_after_each
from tests.support.roles import Role

Stoppable = Role | GatewayProcess
"""A process a chaos test started (stopped by the `procs` fixture)."""


class Bus(Protocol):
    """A nats-server or a cluster of them: where roles connect, with each role's password."""

    @property
    def url(self) -> str: ...

    credentials: dict[str, str]


@dataclass
class Tally:
    """What one client or consumer received: each session's seqs, in arrival order."""

    name: str
    seqs: dict[str, list[int]] = field(default_factory=dict)
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, session: str, seq: int) -> None:
        self.seqs.setdefault(session, []).append(seq)

    def distinct(self, session: str) -> int:
        return len(set(self.seqs.get(session, ())))


@dataclass(frozen=True)
class Row:
    name: str
    sessions: int
    sent: int
    received: int
    lost: int
    duplicated: int
    out_of_order: int
    reconnects: int


def row_of(tally: Tally, sent: Mapping[str, int]) -> Row:
    """A tally against the truth, over the sessions it followed."""
    received = lost = duplicated = out_of_order = expected = 0
    for session, seqs in tally.seqs.items():
        want = sent.get(session, 0)
        expected += want
        received += len(seqs)
        got = set(seqs)
        lost += len(set(range(1, want + 1)) - got)
        duplicated += len(seqs) - len(got)
        out_of_order += sum(1 for a, b in itertools.pairwise(seqs) if b < a)
    return Row(tally.name, len(tally.seqs), expected, received, lost, duplicated, out_of_order,
               tally.reconnects)  # fmt: skip


def settle(fault: str, sent: Mapping[str, int], tallies: Iterable[Tally], **facts: object) -> None:
    """Print and record each tally's counts, then assert: none lost, none twice, in order."""
    rows = [row_of(t, sent) for t in tallies]
    total = {
        "fault": fault,
        "sessions": len(sent),
        "sent": sum(sent.values()),
        "tallies": len(rows),
        "received": sum(r.received for r in rows),
        "lost": sum(r.lost for r in rows),
        "duplicated": sum(r.duplicated for r in rows),
        "out_of_order": sum(r.out_of_order for r in rows),
        "reconnects": sum(r.reconnects for r in rows),
        **facts,
    }
    print(f"\nchaos[{fault}] {json.dumps(total)}", file=sys.stderr)
    if path := os.environ.get("AGENTCAST_CHAOS_COUNTS"):
        with open(path, "a") as out:
            out.write(json.dumps({**total, "rows": [vars(r) for r in rows]}) + "\n")
    bad = [r for r in rows if r.lost or r.duplicated or r.out_of_order]
    assert not bad, f"{len(bad)} of {len(rows)} lost or duplicated events: {bad[:5]}"
    errors = [(t.name, t.errors[:3]) for t in tallies if t.errors]
    assert not errors, errors[:5]


# -- the truth: what JetStream stored ---------------------------------------------------


async def stored_events(js: JetStreamContext, prefix: str = "") -> dict[str, list[Event]]:
    """Every event in the stream of sessions starting with `prefix`, checked to be seqs 1..n."""
    # Right after a fault a cluster may still be electing the stream's leader: the reader
    # of the truth asks again (bounded) rather than fail the run it is judging.
    async with asyncio.timeout(60):
        while True:
            try:
                last = (await js.stream_info(EVENTS_STREAM)).state.last_seq
                out: dict[str, list[Event]] = {}
                if last == 0:
                    return out
                sub = await js.subscribe(
                    EVENTS_ALL,
                    ordered_consumer=True,
                    config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
                    stream=EVENTS_STREAM,
                )
                break
            except (nats.errors.TimeoutError, ServiceUnavailableError):
                await asyncio.sleep(0.5)
    try:
        async with asyncio.timeout(120):
            while True:
                msg = await sub.next_msg(timeout=30)
                event = decode_event(msg.data)
                if event.session.startswith(prefix):
                    out.setdefault(event.session, []).append(event)
                if msg.metadata.sequence.stream >= last:
                    break
    finally:
        await sub.unsubscribe()
    for session, events in out.items():
        seqs = [e.seq for e in events]
        assert seqs == list(range(1, len(seqs) + 1)), f"{session}: the stream itself has {seqs}"
    return out


def counts(events: Mapping[str, list[Event]]) -> dict[str, int]:
    return {session: len(evs) for session, evs in events.items()}


def archive_tally(root: Path, name: str = "archiver") -> Tally:
    return Tally(name, archived_seqs(root) if root.exists() else {})


async def snapshot_of(js: JetStreamContext, session: str) -> ProgressSnapshot | None:
    kv = await js.key_value(SESSIONS_BUCKET)
    try:
        entry = await kv.get(session)
    except KeyNotFoundError:
        return None
    return decode_snapshot(entry.value or b"")


def settled(snap: ProgressSnapshot | None) -> ProgressSnapshot | None:
    """A snapshot without what moves with the clock and the learned history while a run is open."""
    if snap is None or snap.percent_source == "final":
        return snap
    return msgspec.structs.replace(snap, percent=0.0, eta_ms=None, percent_confidence=None)


async def metrics_tally(
    js: JetStreamContext, events: Mapping[str, list[Event]], name: str = "metrics"
) -> Tally:
    """The metrics consumer's count: each snapshot's last seq, and whether it equals the reducer's.

    A snapshot is a sum over its events (text chars, tool calls, tokens), so one
    applied twice or skipped shows as a difference from the pure reducer's
    snapshot of the stored events: that is counted as an error.
    """
    tally = Tally(name)
    for session, evs in events.items():
        snap = await snapshot_of(js, session)
        if snap is None:
            continue
        tally.seqs[session] = list(range(1, snap.last_seq + 1))
        if settled(snap) != settled(snapshots_after_each(evs)[-1]):
            tally.errors.append(f"{session}: snapshot differs from the reducer's")
    return tally


async def wait_for(probe: Any, timeout: float, what: str, interval: float = 0.25) -> None:
    """Poll an async probe until it is truthy, bounded in time (a hang guard, not a target)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await probe():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


# -- the roles, as real processes with their own users ----------------------------------


def creds(bus: Bus, role: str, replicas: int = 1) -> dict[str, str]:
    return {
        "AGENTCAST_NATS_USER": role,
        "AGENTCAST_NATS_PASSWORD": bus.credentials[role],
        "AGENTCAST_REPLICAS": str(replicas),
    }


def archiver(
    bus: Bus, tmp: Path, name: str = "archiver", replicas: int = 1, user: str = "archiver",
    **env: str,
) -> Role:  # fmt: skip
    """`agentcast archiver` into tmp/<name>/archive, with its /metrics on a free port.

    A second archiver beside the first runs as `admin` under a durable name of its own
    (the archiver user may use only the durables it is granted).
    """
    home = tmp / name
    home.mkdir(parents=True, exist_ok=True)
    role = Role(
        "archiver",
        ["--nats", bus.url, "--data", str(home / "data"), "--dir", str(home / "archive"),
         "--metrics-port", str(free_port()), "--log-level", "INFO"],
        {**creds(bus, user, replicas), "AGENTCAST_SEAL_IDLE_S": "600", **env},
        tmp / f"{name}.log",
        "Archiver ready",
    )  # fmt: skip
    return role


def metrics(bus: Bus, tmp: Path, name: str = "metrics", replicas: int = 1, **env: str) -> Role:
    home = tmp / name
    home.mkdir(parents=True, exist_ok=True)
    return Role(
        "metrics",
        ["--nats", bus.url, "--data", str(home / "data"), "--metrics-port", str(free_port()),
         "--log-level", "INFO"],
        {**creds(bus, "metrics", replicas), "AGENTCAST_PROGRESS_INTERVAL_S": "0.1",
         "AGENTCAST_IDLE_AFTER_S": "600", **env},
        tmp / f"{name}.log",
        "Metrics ready",
    )  # fmt: skip


def gateway(bus: Bus, tmp: Path, name: str = "gw", replicas: int = 1, **env: str) -> GatewayProcess:
    return GatewayProcess(bus.url, tmp / name, env={**creds(bus, "gateway", replicas), **env})


class Producer:
    """`agentcast bench produce` (the synthetic producer, recorded traces) as a child process."""

    def __init__(
        self, bus: Bus, tmp: Path, prefix: str, *, sessions: int, rate: float, seconds: float,
        replicas: int = 1,
    ) -> None:  # fmt: skip
        self.prefix = prefix
        self.log = tmp / f"produce-{prefix}.log"
        self.cmd = [sys.executable, "-m", "agentcast.cli", "bench", "produce", "--nats", bus.url,
                    "--data", str(tmp / "produce"), "--sessions", str(sessions), "--rate",
                    str(rate), "--seconds", str(seconds), "--prefix", prefix, "--json"]  # fmt: skip
        self.env = {**os.environ, **creds(bus, "worker", replicas)}
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *self.cmd, stdout=asyncio.subprocess.PIPE, stderr=err, env=self.env
            )

    async def wait(self, timeout: float = 180) -> dict[str, Any]:
        """The producer's report, once every event it emitted is acked."""
        assert self.proc is not None and self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            out = await self.proc.stdout.read()
            code = await self.proc.wait()
        assert code == 0, f"produce exited {code}: {self.log.read_text()[-3000:]}"
        report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        return report

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
