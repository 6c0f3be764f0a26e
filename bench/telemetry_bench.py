"""Telemetry benchmark: events/s through the GenAI recorder, beside the no-op it replaces.

    python bench/telemetry_bench.py [--sessions 500] [--runs 3]

Each run feeds `--sessions` copies of the recorded `coding_tasks` run (tool calls,
several model messages) through consumers.telemetry's recorder, spans going
to a BatchSpanProcessor (as with OTLP) whose exporter drops them, metrics to
an in-memory reader; the figure is events / wall time of `observe` alone,
i.e. the cost the metrics consumer pays per event. Prints JSON per run and
the medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agentcast.settings import Settings
from consumers.telemetry import recorder, telemetry_from
from tests.support.transcript_events import transcript_events


class _Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def one_run(sessions: int) -> dict[str, float]:
    events = [e for i in range(sessions) for e in transcript_events("coding_tasks", f"b_{i}")]
    off = telemetry_from(Settings.load({}, environ={}))
    start = time.perf_counter()
    for event in events:
        off.observe(event)
    off_s = time.perf_counter() - start
    spans = BatchSpanProcessor(_Drop(), max_queue_size=1 << 20)
    on = recorder(spans, InMemoryMetricReader())
    start = time.perf_counter()
    for event in events:
        on.observe(event)
    on_s = time.perf_counter() - start
    spans.shutdown()
    return {
        "events": len(events),
        "off_events_per_s": round(len(events) / off_s),
        "on_events_per_s": round(len(events) / on_s),
        "on_us_per_event": round(on_s / len(events) * 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = []
    for _ in range(args.runs):
        results.append(one_run(args.sessions))
        print(json.dumps(results[-1]), flush=True)
    medians = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(json.dumps({"median": medians}))


if __name__ == "__main__":
    main()
