"""CPU per delivery of the stream formats, in process: V viewers of one session, live.

Feeds recorded runs (producer/traces: `coding_tasks` and `slow`, 783 events,
each run one session) to V viewers the way the hub does (each live frame to every
viewer in turn) and times the gateway-side work per delivery: agentcast's own
frames (framed once per event, the same bytes for every viewer), AG-UI and AI
SDK with live translation shared by the viewers of the session
(gateway/formats/shared.py) and without (every viewer translating for
itself), and `coalesce_ms` (per viewer by nature). Writing to the socket is
not included (the same for every format). Medians of `--runs`.

    python bench/formats_bench.py [--viewers 1,10,100] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from agentcast._internals import http_chunk
from agentcast.codec import encode
from agentcast.envelope import envelope
from agentcast.events import type_of
from gateway.formats import AguiTranslator, AiSdkTranslator, FormatStream, NativeTranslator
from gateway.formats.items import Translator
from gateway.frames import Frame
from producer.synthetic import load_trace, trace_files

_STEMS = ("coding_tasks", "slow")


Run = list[tuple[int, str, bytes]]


def recorded(prefix: str) -> list[tuple[str, Run]]:
    """The runs as sessions of their own: (session, [(seq, type, envelope JSON)])."""
    traces = {p.stem: p for p in trace_files()}
    out: list[tuple[str, Run]] = []
    for stem in _STEMS:
        session, run = f"{prefix}_{stem}", []
        for seq, draft in enumerate(load_trace(traces[stem]), 1):
            event = envelope(draft.data, session=session, run=1, seq=seq,
                             parent_tool_use_id=draft.parent_tool_use_id)  # fmt: skip
            run.append((seq, type_of(event), encode(event)))
        out.append((session, run))
    return out


def native(session: str, events: Run, viewers: int) -> float:
    frames = [Frame(seq, session, kind, payload) for seq, kind, payload in events]
    start = time.perf_counter()
    for frame in frames:
        data = frame.sse  # framed once; every viewer writes these bytes
        for _ in range(viewers):
            assert data
    return time.perf_counter() - start


def formatted(
    session: str, events: Run, viewers: int, make: Callable[[], Translator], *,
    shared: bool, coalesce_ms: int = 0,
) -> float:  # fmt: skip
    frames = [Frame(seq, session, kind, payload) for seq, kind, payload in events]
    streams = [FormatStream(make(), shareable=shared, coalesce_ms=coalesce_ms)
               for _ in range(viewers)]  # fmt: skip
    start = time.perf_counter()
    for frame in frames:
        for stream in streams:
            messages = stream.feed((frame,), live=True)
            if messages:
                http_chunk(b"".join(messages))  # as FormattedOutput frames them for the wire
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--viewers", default="1,10,100")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cases: list[tuple[str, Callable[[str, Run, int], float]]] = [
        ("agentcast (shared bytes)", native),
        ("ag-ui, shared", lambda s, e, v: formatted(
            s, e, v, lambda: AguiTranslator(tracking=False), shared=True)),
        ("ag-ui, per viewer", lambda s, e, v: formatted(
            s, e, v, lambda: AguiTranslator(tracking=False), shared=False)),
        ("ai-sdk, shared", lambda s, e, v: formatted(s, e, v, AiSdkTranslator, shared=True)),
        ("ai-sdk, per viewer", lambda s, e, v: formatted(
            s, e, v, AiSdkTranslator, shared=False)),
        ("agentcast coalesce_ms=50", lambda s, e, v: formatted(
            s, e, v, NativeTranslator, shared=False, coalesce_ms=50)),
    ]  # fmt: skip
    counts = [int(v) for v in args.viewers.split(",")]
    print(f"{'format':28s}" + "".join(f"{f'{v} viewers':>14s}" for v in counts)
          + "   (CPU-µs per delivery, median)")  # fmt: skip
    round_ = 0
    for name, case in cases:
        cells = []
        for viewers in counts:
            times = []
            for _ in range(args.runs):
                round_ += 1
                runs = recorded(f"bench{round_}")  # fresh lineages: no sharing across rounds
                spent = sum(case(session, events, viewers) for session, events in runs)
                deliveries = sum(len(events) for _, events in runs) * viewers
                times.append(spent / deliveries * 1e6)
            cells.append(f"{statistics.median(times):14.2f}")
        print(f"{name:28s}" + "".join(cells))


if __name__ == "__main__":
    main()
