"""Shared by the consumer benchmarks: a nats-server of their own, filled with realistic events.

The events follow the recorded transcripts' mix (mostly text deltas, tool
calls and results, one run per session), ~250 bytes each, published with the
same headers a producer sets. The benchmarks then drain the backlog at full
speed: what a consumer sustains is how fast it catches up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _procs import nats as server  # noqa: F401 - the benchmarks' own nats-server

from agentcast.bus import connect, ensure_streams
from agentcast.codec import encode
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
from agentcast.subjects import EVENTS_STREAM, event_subject
from consumers.consumer import LeasedConsumer

_LIMIT_S = 120.0


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


def main(doc: str, one_run: Callable[[int, int], Awaitable[dict[str, float]]], events: int) -> None:
    """Parse `--events --sessions --runs`, run, print each run and the median as JSON lines."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=events)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = []
    for _ in range(args.runs):
        result = asyncio.run(one_run(args.events, args.sessions))
        print(json.dumps(result), flush=True)
        results.append(result)
    median = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(json.dumps({"median": median}))
