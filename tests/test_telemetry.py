"""OpenTelemetry GenAI spans and metrics from real runs, through the real metrics consumer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentcast.events import AnyEvent, ToolResultData
from agentcast.settings import Settings
from consumers.progress.service import ProgressService
from consumers.telemetry import genai as g
from consumers.telemetry import recorder
from tests.support.events import build_events, publish_events, simple_run, unique_session
from tests.support.roles import Role, next_stream_seq, unique_name, wait_until
from tests.support.scripted import ScriptedModel
from tests.support.transcript_events import transcript_events
from tests.support.worker import follow, running_worker, submit, worker_settings


@pytest.fixture(scope="module")
async def model() -> AsyncIterator[ScriptedModel]:
    async with ScriptedModel(speed=0) as scripted:
        yield scripted


class Exported:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.metrics = InMemoryMetricReader()
        self.recorder = recorder(SimpleSpanProcessor(self.spans), self.metrics)

    def of(self, session: str) -> list[ReadableSpan]:
        """The spans of one session's trace (its root carries the conversation id)."""
        finished = self.spans.get_finished_spans()
        roots = {
            s.context.trace_id
            for s in finished
            if s.parent is None and (s.attributes or {}).get(g.CONVERSATION_ID) == session
        }
        return [s for s in finished if s.context.trace_id in roots]

    def points(self) -> dict[str, list[Any]]:
        data = self.metrics.get_metrics_data()
        out: dict[str, list[Any]] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out


@asynccontextmanager
async def metrics_consumer(
    nc: Client, js: JetStreamContext, settings: Settings, tmp: Path
) -> AsyncIterator[Exported]:
    """The real ProgressService in this loop, exporting to in-memory readers."""
    exported = Exported()
    service = ProgressService(
        settings.replace(
            metrics_consumer=unique_name("otel"),
            consumer_start_seq=await next_stream_seq(js),
            data_dir=str(tmp / "metrics"),
            progress_interval_s=0.05,
        ),
        nc,
    )
    service.telemetry = exported.recorder
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        yield exported
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _parent(span: ReadableSpan, spans: list[ReadableSpan]) -> ReadableSpan | None:
    if span.parent is None:
        return None
    return next(s for s in spans if s.context.span_id == span.parent.span_id)


def _ancestors(span: ReadableSpan, spans: list[ReadableSpan]) -> Iterator[ReadableSpan]:
    while (parent := _parent(span, spans)) is not None:
        yield parent
        span = parent


def _data(event: AnyEvent) -> dict[str, Any]:
    assert isinstance(event.data, dict)
    return event.data


async def test_real_runs_become_nested_genai_spans_and_metrics(
    nc: Client,
    js: JetStreamContext,
    settings: Settings,
    model: ScriptedModel,
    tmp_path: Path,
) -> None:
    bash, sub = unique_session("otel_bash"), unique_session("otel_sub")
    async with metrics_consumer(nc, js, settings, tmp_path) as exported:
        async with running_worker(nc, worker_settings(settings, tmp_path, model.url)):
            await submit(js, bash, "[scenario:bash] say hello from the shell")
            await submit(js, sub, "[scenario:subagent] delegate a shell check")
            runs = {bash: await follow(js, bash), sub: await follow(js, sub)}
        for session in runs:
            await wait_until(
                lambda s=session: any(x.name == "invoke_agent" for x in exported.of(s)),  # type: ignore[misc]
                30,
                f"the run span of {session}",
            )

    for session, events in runs.items():
        spans = exported.of(session)
        root = next(s for s in spans if s.parent is None)
        assert root.name == "invoke_agent"
        assert _attrs(root)[g.OPERATION_NAME] == "invoke_agent"
        assert _attrs(root)[g.PROVIDER_NAME] == "anthropic"
        assert root.start_time == events[0].ts and root.end_time == events[-1].ts
        completed = _data(events[-1])
        usage = completed["usage"]
        assert _attrs(root)[g.USAGE_INPUT_TOKENS] == usage["input_tokens"] + usage.get(
            "cache_read_input_tokens", 0
        ) + usage.get("cache_creation_input_tokens", 0)

        # One chat span per main-agent model message, straight under the run, timed by events.
        messages = [
            e for e in events if e.type == "message.started" and e.parent_tool_use_id is None
        ]
        chats = {_attrs(s).get(g.RESPONSE_ID): s for s in spans if s.name.startswith("chat ")}
        for message in messages:
            chat = chats[_data(message)["message_id"]]
            assert chat.name == f"chat {_data(message)['model']}"
            assert _parent(chat, spans) is root
            assert _attrs(chat)[g.RESPONSE_TIME_TO_FIRST_CHUNK] >= 0
            assert _attrs(chat)[g.USAGE_OUTPUT_TOKENS] > 0
            assert chat.start_time is not None and chat.start_time <= message.ts

        # Every tool call of the main agent sits under the chat whose message asked for it.
        asked_in: dict[str, str] = {}
        current = None
        for event in events:
            if event.type == "message.started" and event.parent_tool_use_id is None:
                current = _data(event)["message_id"]
            if event.type == "tool.started" and event.parent_tool_use_id is None:
                asked_in[_data(event)["tool_use_id"]] = current or ""
        tools = {_attrs(s)[g.TOOL_CALL_ID]: s for s in spans if s.name.startswith("execute_tool ")}
        for called in (e for e in events if e.type == "tool.called"):
            span = tools[_data(called)["tool_use_id"]]
            assert span.name == f"execute_tool {_data(called)['name']}"
            assert _attrs(span)[g.TOOL_NAME] == _data(called)["name"]
            assert g.ERROR_TYPE not in _attrs(span)
            assert span.start_time == called.ts
            if called.parent_tool_use_id is None:
                assert _parent(span, spans) is chats[asked_in[_data(called)["tool_use_id"]]]
            else:
                # A sub-agent's call: under the sub-agent, under the Task call that started it.
                task = tools[called.parent_tool_use_id]
                chain = list(_ancestors(span, spans))
                assert task in chain
                agent = chain[chain.index(task) - 1]
                assert agent.name.startswith("invoke_agent ") and _parent(agent, spans) is task

    sub_tools = [e for e in runs[sub] if e.type == "tool.called" and e.parent_tool_use_id]
    assert sub_tools, "the sub-agent scenario ran no tool of its own"

    points = exported.points()
    for name in (
        g.TOKEN_USAGE, g.OPERATION_DURATION, g.TIME_TO_FIRST_CHUNK,
        g.INVOKE_AGENT_DURATION, g.EXECUTE_TOOL_DURATION,
    ):  # fmt: skip
        assert points.get(name), f"no {name} recorded"
    kinds = {p.attributes[g.TOKEN_TYPE] for p in points[g.TOKEN_USAGE]}
    assert kinds == {"input", "output"}
    assert {p.attributes[g.TOOL_NAME] for p in points[g.EXECUTE_TOOL_DURATION]} >= {"Bash", "Agent"}


def test_a_failed_tool_call_and_a_failed_run_carry_error_type() -> None:
    exported = Exported()
    session = unique_session("otel_err")
    datas = simple_run()
    failing = [ToolResultData(tool_use_id="toolu_1", is_error=True, content="boom")]
    datas = [failing[0] if isinstance(d, ToolResultData) else d for d in datas]
    for event in build_events(session, datas):
        exported.recorder.observe(event)
    tool = next(s for s in exported.of(session) if s.name == "execute_tool Bash")
    assert _attrs(tool)[g.ERROR_TYPE] == "tool_error"
    assert _attrs(tool)[g.TOOL_CALL_ID] == "toolu_1"
    errors = [
        p for p in exported.points()[g.EXECUTE_TOOL_DURATION] if p.attributes.get(g.ERROR_TYPE)
    ]
    assert errors and errors[0].attributes[g.ERROR_TYPE] == "tool_error"


class _Receiver:
    """A tiny OTLP/HTTP receiver on loopback: it keeps every request it is sent."""

    def __init__(self) -> None:
        received: list[tuple[str, bytes]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                received.append((self.path, body))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def span_names(self) -> set[str]:
        names = set()
        for path, body in list(self.received):
            if path == "/v1/traces":
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    names |= {s.name for scope in resource.scope_spans for s in scope.spans}
        return names

    def metric_names(self) -> set[str]:
        names = set()
        for path, body in list(self.received):
            if path == "/v1/metrics":
                request = ExportMetricsServiceRequest.FromString(body)
                for resource in request.resource_metrics:
                    names |= {m.name for scope in resource.scope_metrics for m in scope.metrics}
        return names


async def test_the_metrics_process_exports_over_otlp_http(
    js: JetStreamContext, settings: Settings, tmp_path: Path
) -> None:
    receiver = _Receiver()
    receiver.thread.start()
    assert settings.nats_url
    role = Role(
        "metrics",
        ["--nats", settings.nats_url, "--data", str(tmp_path / "data"), "--metrics-port", "0"],
        {
            "AGENTCAST_METRICS_CONSUMER": unique_name("otlp"),
            "AGENTCAST_CONSUMER_START_SEQ": str(await next_stream_seq(js)),
            "AGENTCAST_OTEL_ENDPOINT": receiver.url,
            "OTEL_METRIC_EXPORT_INTERVAL": "500",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        },
        tmp_path / "metrics.log",
        "Metrics ready",
    )
    role.start()
    try:
        await publish_events(js, transcript_events("bash", unique_session("otlp")))
        await wait_until(
            lambda: {"invoke_agent", "execute_tool Bash"} <= receiver.span_names(),
            30,
            "the spans at the collector",
        )
        await wait_until(
            lambda: {g.TOKEN_USAGE, g.EXECUTE_TOOL_DURATION} <= receiver.metric_names(),
            30,
            "the metrics at the collector",
        )
    finally:
        role.stop()
        receiver.server.shutdown()
        receiver.server.server_close()
    assert any(name.startswith("chat ") for name in receiver.span_names())
