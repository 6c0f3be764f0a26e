"""Events -> OpenTelemetry GenAI spans and metrics, after the fact, with the events' own times.

The spans of one run:

    invoke_agent                      run.queued .. run.completed|failed|cancelled
    ├── chat <model>                  message.started .. message.completed
    │   └── execute_tool <name>       tool.called .. tool.result (the chat that asked for it)
    │       └── invoke_agent <type>   a sub-agent: its first event .. the Task tool's result
    │           ├── chat <model>      the sub-agent's own messages, tools under them
    │           └── execute_tool ...  (or straight under the sub-agent when it streams none)
    └── chat <model> ...

Events of a sub-agent carry `parent_tool_use_id` = the Task (Agent) tool call
that started it: that is the scope whose spans nest under that call. Span
times are envelope `ts` (producer Unix ns, OpenTelemetry's own unit), so the
trace shows the agent's timing, not the consumer's.

Runs left open are bounded (`MAX_OPEN_RUNS`, oldest ended first with
`error.type=abandoned`). A metrics restart forgets the runs it had open:
their spans are not exported (the next events of such a run start a new
`invoke_agent` span).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.metrics import Meter
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.util.types import AttributeValue

from agentcast.events import (
    AnyEvent,
    Event,
    MessageCompleted,
    MessageStarted,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunQueued,
    RunStarted,
    TaskStarted,
    TextDelta,
    ThinkingDelta,
    ToolCalled,
    ToolResult,
    ToolStarted,
)
from agentcast.events import (
    Status as StatusEvent,
)
from consumers.telemetry import genai as g
from consumers.telemetry.instruments import (
    Instruments,
    error_attributes,
    mark_failed,
    seconds,
    usage_attributes,
)

logger = logging.getLogger(__name__)

MAX_OPEN_RUNS: Final = 10_000
_BASE: Final[dict[str, AttributeValue]] = {g.PROVIDER_NAME: g.PROVIDER_ANTHROPIC}


@dataclass
class _Chat:
    span: Span
    start_ns: int
    model: str
    first_chunk_ns: int | None = None


@dataclass
class _Run:
    span: Span
    session: str
    start_ns: int
    model: str = ""
    chats: dict[str | None, _Chat] = field(default_factory=dict)
    """The open chat of each scope (None: the main agent; else its Task tool call)."""
    last_chat: dict[str | None, Span] = field(default_factory=dict)
    requested_ns: dict[str | None, int] = field(default_factory=dict)
    """When each scope's next model request went out (`status: requesting`)."""
    asked_by: dict[str, Span] = field(default_factory=dict)
    """tool_use_id -> the chat span whose message asked for the call."""
    tools: dict[str, tuple[Span, int, str]] = field(default_factory=dict)
    agents: dict[str, tuple[Span, int, str]] = field(default_factory=dict)
    """Sub-agents by the tool_use_id of the Task call that started them."""


class GenAiRecorder:
    """Feed it every applied event (`observe`); it starts and ends spans and records metrics."""

    def __init__(self, tracer: Tracer, meter: Meter) -> None:
        self.tracer = tracer
        self.instruments = Instruments(meter)
        self.runs: dict[tuple[str, int], _Run] = {}

    def observe(self, event: Event | AnyEvent) -> None:
        if isinstance(event, AnyEvent):
            return  # a type newer than this reader: nothing it knows how to trace
        key = (event.session, event.run)
        run = self.runs.get(key)
        if run is None:
            run = self._open_run(event)
        scope = event.parent_tool_use_id
        match event:
            case RunStarted(data=data):
                run.model = data.model or run.model
                if data.model:
                    run.span.set_attribute(g.REQUEST_MODEL, data.model)
            case StatusEvent(data=data) if data.status == "requesting":
                run.requested_ns[scope] = event.ts
            case MessageStarted(data=data):
                self._start_chat(run, scope, event.ts, data.model or run.model, data.message_id)
            case TextDelta() | ThinkingDelta():
                self._first_chunk(run, scope, event.ts)
            case ToolStarted(data=data):
                self._first_chunk(run, scope, event.ts)
                chat = run.chats.get(scope)
                if chat is not None:
                    run.asked_by[data.tool_use_id] = chat.span
            case MessageCompleted(data=data):
                self._end_chat(run, scope, event.ts, data.stop_reason, data.usage)
            case ToolCalled(data=data):
                self._start_tool(run, scope, event.ts, data.tool_use_id, data.name, data.server)
            case ToolResult(data=data):
                self._end_tool(run, event.ts, data.tool_use_id, data.is_error)
            case TaskStarted(data=data) if data.tool_use_id:
                self._agent(run, data.tool_use_id, event.ts, data.task_type, data.task_id)
            case RunCompleted(data=data):
                error = (data.subtype or "error") if data.is_error else None
                self._end_run(key, run, event.ts, error, data.stop_reason, data.usage)
            case RunFailed(data=data):
                self._end_run(key, run, event.ts, data.kind, None, data.usage)
            case RunCancelled():
                self._end_run(key, run, event.ts, "cancelled", None, None)

    # -- runs ------------------------------------------------------------------------

    def _open_run(self, event: Event) -> _Run:
        if len(self.runs) >= MAX_OPEN_RUNS:
            oldest = next(iter(self.runs))
            self._end_run(oldest, self.runs[oldest], event.ts, "abandoned", None, None)
        attributes: dict[str, AttributeValue] = {
            **_BASE,
            g.OPERATION_NAME: g.OP_INVOKE_AGENT,
            g.AGENT_NAME: "claude-code",
            g.CONVERSATION_ID: event.session,
            "agentcast.run": event.run,
        }
        if isinstance(event, RunQueued):
            model = event.data.options.get("model")
            if isinstance(model, str):
                attributes[g.REQUEST_MODEL] = model
        span = self.tracer.start_span(
            g.OP_INVOKE_AGENT, kind=SpanKind.INTERNAL, attributes=attributes, start_time=event.ts
        )
        run = _Run(span, event.session, event.ts)
        self.runs[(event.session, event.run)] = run
        return run

    def _end_run(
        self, key: tuple[str, int], run: _Run, ts: int, error: str | None,
        stop_reason: str | None, usage: Mapping[str, Any] | None,
    ) -> None:  # fmt: skip
        for scope in list(run.chats):
            self._end_chat(run, scope, ts, None, None, error="incomplete")
        for tool_use_id in list(run.tools):
            self._end_tool(run, ts, tool_use_id, True, error="incomplete")
        for tool_use_id in list(run.agents):
            self._end_agent(run, tool_use_id, ts, "incomplete")
        if stop_reason:
            run.span.set_attribute(g.RESPONSE_FINISH_REASONS, [stop_reason])
        run.span.set_attributes(usage_attributes(usage))
        mark_failed(run.span, error)
        run.span.end(end_time=ts)
        attributes = {g.AGENT_NAME: "claude-code", **error_attributes(error)}
        if run.model:
            attributes[g.REQUEST_MODEL] = run.model
        self.instruments.agent.record(seconds(ts - run.start_ns), attributes)
        self.runs.pop(key, None)

    # -- scopes: the main agent, or a sub-agent under its Task call ---------------------

    def _parent(self, run: _Run, scope: str | None) -> Span:
        if scope is None:
            return run.span
        if scope not in run.agents:
            self._agent(run, scope, None, None, None)
        return run.agents[scope][0]

    def _agent(
        self, run: _Run, tool_use_id: str, ts: int | None, kind: str | None, task_id: str | None
    ) -> None:
        if tool_use_id in run.agents:
            return
        tool = run.tools.get(tool_use_id)
        parent = tool[0] if tool is not None else run.span
        start = ts if ts is not None else (tool[1] if tool is not None else run.start_ns)
        name = kind or "subagent"
        attributes: dict[str, AttributeValue] = {
            **_BASE,
            g.OPERATION_NAME: g.OP_INVOKE_AGENT,
            g.AGENT_NAME: name,
            g.CONVERSATION_ID: run.session,
        }
        if task_id:
            attributes[g.AGENT_ID] = task_id
        span = self.tracer.start_span(
            f"{g.OP_INVOKE_AGENT} {name}",
            context=trace.set_span_in_context(parent),
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            start_time=start,
        )
        run.agents[tool_use_id] = (span, start, name)

    def _end_agent(self, run: _Run, tool_use_id: str, ts: int, error: str | None) -> None:
        span, start, name = run.agents.pop(tool_use_id)
        if tool_use_id in run.chats:
            self._end_chat(run, tool_use_id, ts, None, None, error="incomplete")
        mark_failed(span, error)
        span.end(end_time=ts)
        attributes = {g.AGENT_NAME: name, **error_attributes(error)}
        if run.model:
            attributes[g.REQUEST_MODEL] = run.model
        self.instruments.agent.record(seconds(ts - start), attributes)

    # -- model calls -----------------------------------------------------------------

    def _start_chat(
        self, run: _Run, scope: str | None, ts: int, model: str, message_id: str | None
    ) -> None:
        if scope in run.chats:
            self._end_chat(run, scope, ts, None, None, error="incomplete")
        start = run.requested_ns.pop(scope, ts)
        attributes: dict[str, AttributeValue] = {
            **_BASE,
            g.OPERATION_NAME: g.OP_CHAT,
            g.REQUEST_STREAM: True,
        }
        if model:
            attributes[g.REQUEST_MODEL] = model
            attributes[g.RESPONSE_MODEL] = model
        if message_id:
            attributes[g.RESPONSE_ID] = message_id
        span = self.tracer.start_span(
            f"{g.OP_CHAT} {model}".rstrip(),
            context=trace.set_span_in_context(self._parent(run, scope)),
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=min(start, ts),
        )
        run.chats[scope] = _Chat(span, min(start, ts), model)
        run.last_chat[scope] = span

    def _first_chunk(self, run: _Run, scope: str | None, ts: int) -> None:
        chat = run.chats.get(scope)
        if chat is not None and chat.first_chunk_ns is None:
            chat.first_chunk_ns = ts
            chat.span.set_attribute(g.RESPONSE_TIME_TO_FIRST_CHUNK, seconds(ts - chat.start_ns))

    def _end_chat(
        self, run: _Run, scope: str | None, ts: int, stop_reason: str | None,
        usage: Mapping[str, Any] | None, error: str | None = None,
    ) -> None:  # fmt: skip
        chat = run.chats.pop(scope, None)
        if chat is None:
            return
        tokens = usage_attributes(usage)
        chat.span.set_attributes(tokens)
        if stop_reason:
            chat.span.set_attribute(g.RESPONSE_FINISH_REASONS, [stop_reason])
        mark_failed(chat.span, error)
        chat.span.end(end_time=ts)
        attributes: dict[str, AttributeValue] = {**_BASE, g.OPERATION_NAME: g.OP_CHAT}
        if chat.model:
            attributes[g.REQUEST_MODEL] = chat.model
            attributes[g.RESPONSE_MODEL] = chat.model
        i = self.instruments
        i.duration.record(seconds(ts - chat.start_ns), {**attributes, **error_attributes(error)})
        if chat.first_chunk_ns is not None:
            i.first_chunk.record(seconds(chat.first_chunk_ns - chat.start_ns), attributes)
        for kind, key in (
            (g.TOKEN_INPUT, g.USAGE_INPUT_TOKENS),
            (g.TOKEN_OUTPUT, g.USAGE_OUTPUT_TOKENS),
        ):
            if key in tokens:
                i.tokens.record(tokens[key], {**attributes, g.TOKEN_TYPE: kind})  # type: ignore[arg-type]

    # -- tool calls ------------------------------------------------------------------

    def _start_tool(
        self, run: _Run, scope: str | None, ts: int, tool_use_id: str, name: str, server: bool
    ) -> None:
        if tool_use_id in run.tools:
            return
        parent = run.asked_by.pop(tool_use_id, None)
        if parent is None:
            # Not streamed (a sub-agent's calls often are not): the scope's open or last chat.
            chat = run.chats.get(scope)
            parent = chat.span if chat is not None else run.last_chat.get(scope)
        if parent is None:
            parent = self._parent(run, scope)
        tool_type = g.TOOL_TYPE_EXTENSION if server else g.TOOL_TYPE_FUNCTION
        span = self.tracer.start_span(
            f"{g.OP_EXECUTE_TOOL} {name}",
            context=trace.set_span_in_context(parent),
            kind=SpanKind.INTERNAL,
            attributes={
                **_BASE,
                g.OPERATION_NAME: g.OP_EXECUTE_TOOL,
                g.TOOL_NAME: name,
                g.TOOL_CALL_ID: tool_use_id,
                g.TOOL_TYPE: tool_type,
            },
            start_time=ts,
        )
        run.tools[tool_use_id] = (span, ts, name)

    def _end_tool(
        self, run: _Run, ts: int, tool_use_id: str, is_error: bool, error: str | None = None
    ) -> None:
        if tool_use_id in run.agents:
            self._end_agent(run, tool_use_id, ts, "tool_error" if is_error else None)
        tool = run.tools.pop(tool_use_id, None)
        if tool is None:
            return
        span, start, name = tool
        error = error or ("tool_error" if is_error else None)
        mark_failed(span, error)
        span.end(end_time=ts)
        self.instruments.tool.record(
            seconds(ts - start),
            {g.TOOL_NAME: name, g.OPERATION_NAME: g.OP_EXECUTE_TOOL, **error_attributes(error)},
        )
