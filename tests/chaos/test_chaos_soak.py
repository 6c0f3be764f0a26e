"""The long soak (opt-in): minutes of random faults under load, then the same counts.

    AGENTCAST_SOAK=1 .venv/bin/python -m pytest tests/chaos/test_chaos_soak.py -s

`AGENTCAST_SOAK_S` sets the length (default 600 s), `AGENTCAST_SOAK_SEED` the
random seed (printed). Two gateways, the archiver, the metrics consumer and
the synthetic producer run on one nats-server; every few seconds one fault,
chosen at random: a gateway killed and restarted, the archiver or the metrics
consumer killed mid-batch and restarted, nats-server frozen (SIGSTOP) for
5-15 s, or nats-server killed and restarted. Clients resume through it all.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from pathlib import Path

import pytest

from tests.support.chaos import Stoppable, archiver, gateway, metrics, settle
from tests.support.chaos_load import Load, caught_up, under_load
from tests.support.nats import PrivateNats
from tests.support.roles import Role

pytestmark = [pytest.mark.soak, pytest.mark.timeout(3600)]


async def test_soak_random_faults_under_load_nothing_lost_nothing_twice(
    private_nats: PrivateNats, tmp_path: Path, procs: list[Stoppable]
) -> None:
    seconds = float(os.environ.get("AGENTCAST_SOAK_S", "600"))
    seed = int(os.environ.get("AGENTCAST_SOAK_SEED", str(time.time_ns() % 1_000_000)))
    print(f"soak: {seconds:.0f}s, seed {seed}")
    rng = random.Random(seed)
    bus = private_nats.server
    gateways = [gateway(bus, tmp_path, "gw-a"), gateway(bus, tmp_path, "gw-b")]
    consumers: list[Role] = [archiver(bus, tmp_path), metrics(bus, tmp_path)]
    procs += [*gateways, *consumers]
    await asyncio.gather(*(asyncio.to_thread(p.start, 60) for p in procs))
    live = [g.url for g in gateways]
    done: dict[str, int] = {}

    async def restart_gateway() -> None:
        victim = rng.choice(gateways)
        live.remove(victim.url)
        victim.kill()
        await asyncio.sleep(rng.uniform(0.5, 3))
        await asyncio.to_thread(victim.start, 60)
        live.append(victim.url)

    async def restart_consumer() -> None:
        victim = rng.choice(consumers)
        victim.kill()
        await asyncio.sleep(rng.uniform(0, 2))
        await asyncio.to_thread(victim.start, 60)

    async def stall() -> None:
        assert bus.pid is not None
        os.kill(bus.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(rng.uniform(5, 15))
        finally:
            os.kill(bus.pid, signal.SIGCONT)

    async def crash_nats() -> None:
        bus.kill()
        await asyncio.sleep(rng.uniform(0.5, 3))
        await bus.start_async()

    kinds = [restart_gateway, restart_consumer, stall, crash_nats]

    async def faults() -> None:
        deadline = time.monotonic() + seconds - 10
        while time.monotonic() < deadline:
            await asyncio.sleep(rng.uniform(3, 10))
            fault = rng.choice(kinds)
            done[fault.__name__] = done.get(fault.__name__, 0) + 1
            await fault()

    outcome = await under_load(
        bus, private_nats.nc.jetstream, tmp_path, lambda: list(live), faults,
        Load(sessions=16, sse_per_session=3, ws_clients=8, seconds=seconds),
    )  # fmt: skip
    tallies = await caught_up(
        private_nats.nc.jetstream(), tmp_path / "archiver" / "archive", outcome.events, 300
    )
    settle(
        f"soak {seconds:.0f}s of random faults", outcome.sent, outcome.clients + tallies,
        seed=seed, faults=done,
    )  # fmt: skip
