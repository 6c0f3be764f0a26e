"""Shared by the consumer benchmarks: a nats-server of their own, filled with realistic events.

The events follow the recorded transcripts' mix (mostly text deltas, tool
calls and results, one run per session), ~250 bytes each, published with the
same headers a producer sets. The benchmarks then drain the backlog at full
speed: what a consumer sustains is how fast it catches up.

Live (`--live`): the opposite shape, as in production. The stream starts
empty and `agentcast bench produce` (a subprocess: its CPU is not the
consumer's) publishes recorded agent traces at `--rate` events/s per session
over `--sessions` sessions, so every pull brings a few events of many
sessions. The consumer runs in this process; after a warmup, its CPU (every
thread) and nats-server's are taken over `--seconds`, per event it applied.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _procs import cpu_s
from _procs import nats as server
from nats.aio.client import Client

from agentcast.bus import connect, ensure_streams
from agentcast.codec import encode
from agentcast.embedded import EmbeddedNats
from agentcast.envelope import envelope
from agentcast.events import (
    EventData,
    MessageCompletedData,
    MessageStartedData,
    RunCompletedData,
    RunQueuedData,
    RunStartedData,
    TextDeltaData,
    ToolCalledData,
    ToolResultData,
    ToolStartedData,
    type_of,
)
from agentcast.settings import Settings
from agentcast.subjects import EVENTS_STREAM, LIVE_ALL, event_subject
from consumers.consumer import LeasedConsumer

_LIMIT_S = 120.0


@dataclass(frozen=True)
class Load:
    """One benchmark's shape: a backlog of `events` (bulk), or `rate` per session (live)."""

    events: int
    sessions: int
    live: bool = False
    rate: float = 20.0
    seconds: float = 10.0
    warmup: float = 3.0
    profile: str = ""
    """Live: write py-spy's collapsed stacks of this process over the window here."""


def run_datas(n: int) -> list[EventData]:
    """One run of about `n` events."""
    datas: list[EventData] = [
        RunQueuedData(prompt="benchmark the consumers"),
        RunStartedData(model="m"),
    ]
    turn = 0
    while len(datas) < n - 1:
        turn += 1
        datas.append(MessageStartedData(message_id=f"msg_{turn}", model="m"))
        datas += [
            TextDeltaData(index=0, text=f"streamed text of turn {turn}, chunk {k} ")
            for k in range(12)
        ]
        tid = f"toolu_{turn}"
        datas.append(ToolStartedData(tool_use_id=tid, name="Bash", index=1))
        datas.append(
            ToolCalledData(tool_use_id=tid, name="Bash", input={"command": f"echo {turn}"})
        )
        datas.append(ToolResultData(tool_use_id=tid, content=f"{turn}\n"))
        datas.append(
            MessageCompletedData(
                message_id=f"msg_{turn}", usage={"input_tokens": 900, "output_tokens": 80}
            )
        )
    datas = datas[: n - 1]
    datas.append(RunCompletedData(result="done", num_turns=turn, total_cost_usd=0.01))
    return datas


async def fill(url: str, events: int, sessions: int) -> int:
    """Publish `events` events over `sessions` sessions (interleaved); returns the stream's count."""
    settings = Settings.load({"nats_url": url}, environ={})
    nc = await connect(settings, "bench-fill")
    js = nc.jetstream()
    await ensure_streams(js, settings)
    per = events // sessions
    lanes = [(f"b{s:05d}", run_datas(per)) for s in range(sessions)]
    now = time.time_ns()
    for i in range(per):
        for session, datas in lanes:
            event = envelope(datas[i], session=session, run=1, seq=i + 1, ts=now + i)
            await nc.publish(
                event_subject(session, type_of(event)),
                encode(event),
                headers={"Nats-Msg-Id": event.id, "Agentcast-Seq": str(i + 1)},
            )
        if i % 20 == 0:
            await nc.flush()
    await nc.flush()
    total = per * sessions
    deadline = time.monotonic() + 60
    while (
        await js.stream_info(EVENTS_STREAM)
    ).state.messages < total and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await nc.close()
    return total


async def drain(consumer: LeasedConsumer[Any], done: Callable[[], int], total: int) -> float:
    """Run a started consumer until `done()` reaches `total`; seconds from first read to last ack."""
    stop = asyncio.Event()
    loop = asyncio.ensure_future(consumer._loop(stop))
    started = time.perf_counter()
    deadline = started + _LIMIT_S
    while done() < total and time.perf_counter() < deadline and not loop.done():
        await asyncio.sleep(0.005)
    stop.set()
    await loop
    await consumer.commit()
    return time.perf_counter() - started


async def live(
    consumer: LeasedConsumer[Any],
    done: Callable[[], int],
    nats: EmbeddedNats,
    nc: Client,
    load: Load,
) -> dict[str, float]:
    """Run a started consumer under paced live traffic, then stop it; CPU per event measured."""
    assert nats.pid is not None
    try:
        return await _live(consumer, done, nats.pid, nats.admin_url, load)
    finally:
        await consumer.shutdown()
        await nc.close()


def _producer(url: str, load: Load) -> Awaitable[asyncio.subprocess.Process]:
    cmd = [sys.executable, "-m", "agentcast.cli", "bench", "produce", "--nats", url,
           "--sessions", str(load.sessions), "--rate", str(load.rate),
           "--seconds", str(load.warmup + load.seconds + 1), "--json"]  # fmt: skip
    return asyncio.create_subprocess_exec(*cmd, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)


async def _live(
    consumer: LeasedConsumer[Any], done: Callable[[], int], nats_pid: int, url: str, load: Load
) -> dict[str, float]:
    stop = asyncio.Event()
    loop = asyncio.ensure_future(consumer._loop(stop))
    producer = await _producer(url, load)
    try:
        await asyncio.sleep(load.warmup)
        me = [os.getpid()]
        spy = _profile(load)
        n0, cpu0, nats0, t0 = done(), cpu_s(me), cpu_s([nats_pid]), time.monotonic()
        await asyncio.sleep(load.seconds)
        n1, cpu1, nats1, t1 = done(), cpu_s(me), cpu_s([nats_pid]), time.monotonic()
        if spy is not None:
            spy.wait(30)
    finally:
        await asyncio.wait_for(producer.wait(), 60)
        stop.set()
        await loop
        await consumer.commit()
    events = max(1, n1 - n0)
    return {
        "events": events,
        "events_per_s": round(events / (t1 - t0)),
        "cpu_us_per_event": round((cpu1 - cpu0) / events * 1e6, 2),
        "nats_us_per_event": round((nats1 - nats0) / events * 1e6, 2),
        "lag_at_end": consumer.puller.pending,
    }


async def producer_only(load: Load, republish: bool) -> dict[str, float]:
    """nats-server's CPU per event with the live producer alone: what the consumers add is the rest.

    With `republish`, one subscriber reads `agentcast.live.>` (as the gateway
    does); without, the events stream's RePublish is removed first (a
    measurement only: the gateway needs it).
    """
    with tempfile.TemporaryDirectory() as tmp, server(Path(tmp)) as nats:
        settings = Settings.load({"nats_url": nats.admin_url}, environ={})
        nc = await connect(settings, "bench-baseline")
        js = nc.jetstream()
        await ensure_streams(js, settings)
        if republish:
            # A reader of the republished events, as the gateway is (never read: not measured).
            await nc.subscribe(LIVE_ALL, pending_msgs_limit=1_000_000, pending_bytes_limit=0)
        else:
            config = (await js.stream_info(EVENTS_STREAM)).config
            config.republish = None
            await js.update_stream(config)
        assert nats.pid is not None
        producer = await _producer(nats.admin_url, load)
        try:
            await asyncio.sleep(load.warmup)
            n0, cpu0 = (await js.stream_info(EVENTS_STREAM)).state.messages, cpu_s([nats.pid])
            await asyncio.sleep(load.seconds)
            n1, cpu1 = (await js.stream_info(EVENTS_STREAM)).state.messages, cpu_s([nats.pid])
        finally:
            await asyncio.wait_for(producer.wait(), 60)
            await nc.close()
    events = max(1, n1 - n0)
    return {
        "republish": republish,
        "events_per_s": round(events / load.seconds),
        "nats_us_per_event": round((cpu1 - cpu0) / events * 1e6, 2),
    }


def _profile(load: Load) -> subprocess.Popen[bytes] | None:
    if not load.profile:
        return None
    spy = str(Path(sys.executable).parent / "py-spy")
    cmd = [spy, "record", "--native", "--format", "raw", "--rate", "250", "--pid", str(os.getpid()),
           "--duration", str(int(load.seconds)), "--output", load.profile]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(doc: str, one_run: Callable[[Load], Awaitable[dict[str, float]]], events: int) -> None:
    """Parse the arguments, run, print each run and the median as JSON lines."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=events)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--live", action="store_true", help="paced live traffic, not a backlog")
    parser.add_argument("--rate", type=float, default=20.0, help="live: events/s per session")
    parser.add_argument("--seconds", type=float, default=10.0, help="live: measured seconds")
    parser.add_argument("--profile", default="", help="live: py-spy collapsed stacks to this file")
    args = parser.parse_args()
    load = Load(args.events, args.sessions, args.live, args.rate, args.seconds,
                profile=args.profile)  # fmt: skip
    results = []
    for _ in range(args.runs):
        result = asyncio.run(one_run(load))
        print(json.dumps(result), flush=True)
        results.append(result)
    median = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(json.dumps({"median": median}))


if __name__ == "__main__":
    # python bench/_consumer_load.py [--sessions 100] [--rate 20] [--seconds 10] [--runs 3]:
    # the producer-only baselines of nats-server's cost, with and without the live republish.
    for flag in (True, False):
        main(
            f"producer-only nats-server cost (republish={flag})",
            lambda load, flag=flag: producer_only(load, flag),  # type: ignore[misc]
            events=0,
        )
