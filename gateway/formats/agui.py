"""`format=ag-ui`: AG-UI 1.0 events from agentcast events, one state machine per client stream.

Conventions: threadId = session, runId = "<session>:<run>", timestamp in ms,
`metadata.agentcast = {seq, id}` on every event (with what AG-UI has no field
for: stop_reason, usage, is_error, cost...), and the SSE `id:` of every message
is the agentcast cursor of the event it came from. Events of a
sub-agent carry `subagentRunId` = their parent_tool_use_id. AG-UI allows
nothing between runs, so events outside a run are dropped, and a run is only
streamed from its `run.queued` (a stream joining mid-run gets the prelude:
RUN_STARTED, MESSAGES_SNAPSHOT and START events for what is still open).
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Final

from agentcast.codec import encode
from gateway.formats.agui_state import (
    PROTOCOL_VERSION,
    Json,
    Lane,
    Run,
    Tool,
    Transcript,
    event,
    open_reasoning,
    result_text,
    token_usage,
    tool_start,
)
from gateway.formats.items import Item, sse_data

_SOURCE: Final = "claude-agent-sdk"


class AguiTranslator:
    """AG-UI events for one client; see the module docstring."""

    __slots__ = ("_item", "_runs", "_thread", "done", "tracking")

    def __init__(self, *, tracking: bool) -> None:
        self.done = False
        self._thread: str | None = None
        """The one session whose run starts it has read ("*": several, as on the firehose)."""
        self.tracking = tracking
        """Keep transcripts (a client joined mid-run: a MESSAGES_SNAPSHOT will be needed)."""
        self._runs: dict[str, Run] = {}
        self._item: Item | None = None

    # -- output ---------------------------------------------------------------

    def _stamp(self, out: Json) -> Json:
        item = self._item
        if item is not None:
            env = item.event
            out["timestamp"] = env.ts // 1_000_000
            meta = out.setdefault("metadata", {})
            meta["agentcast"] = {**meta.get("agentcast", {}), "seq": env.seq, "id": env.id}
        return out

    def feed(self, item: Item, *, quiet: bool) -> list[bytes]:
        self._item = item
        out = self._events(item)
        if quiet or not out:
            return []
        cursor = item.cursor
        return [sse_data(cursor, encode(self._stamp(e))) for e in out]

    def prelude(self, cursor: str) -> list[bytes]:
        """RUN_STARTED, MESSAGES_SNAPSHOT and re-opened STARTs of every run open now."""
        self.tracking = False
        out: list[Json] = []
        for run in self._runs.values():
            out += run.reopen()
        return [sse_data(cursor, encode(self._stamp(e))) for e in out]

    def lineage(self) -> Hashable | None:
        # Once a run.queued was read, the state is what every reader of the session from a
        # run start has: the runs so far decide it, not where the client joined.
        if self._thread is None or self._thread == "*" or self.tracking:
            return None
        return ("ag-ui", self._thread)

    # -- the mapping ----------------------------------------------------------

    def _events(self, item: Item) -> list[Json]:
        env = item.event
        kind, data = env.type, item.data
        if kind == "run.queued":
            self._thread = env.session if self._thread in (None, env.session) else "*"
            return self._run_queued(env.session, env.run, data)
        run = self._runs.get(env.session)
        if run is None:
            return []  # outside a run: AG-UI allows nothing between runs
        sub = env.parent_tool_use_id
        out: list[Json] = []
        if sub is not None and sub not in run.subagents and sub not in run.finished_subagents:
            out.append(self._subagent_started(run, sub, {}, None))
        lane = sub if sub in run.subagents else None
        match kind:
            case "message.started":
                out += self._message_started(run, lane, data, item)
            case "text.delta":
                out += self._text_delta(run, lane, str(data.get("text", "")), item)
            case "text.completed":
                out += self._text_completed(run, lane, data, item)
            case "thinking.delta":
                out += self._thinking_delta(run, lane, data, str(data.get("text", "")), item)
            case "thinking.completed":
                out += self._thinking_completed(run, lane, data, item)
            case "tool.started":
                out += self._tool_started(run, lane, data)
            case "tool.input.delta":
                out += self._tool_input(run, data)
            case "tool.called":
                out += self._tool_called(run, lane, data)
            case "tool.result":
                out.append(self._tool_result(run, lane, data))
            case "message.completed":
                out += self._close_lane(run, lane, text=True, tools=False)
                out.append(self._step_finished(run, lane, data))
            case "task.started":
                out += self._task_started(run, lane, data)
            case "task.completed":
                out += self._task_completed(run, lane, data)
            case "run.completed" | "run.failed" | "run.cancelled":
                out += self._run_end(run, kind, data)
            case "sdk.other":
                raw = data.get("raw")
                out.append(event("RAW", event=raw if raw is not None else {},
                                  source=f"{_SOURCE}:{data.get('class')}", subagentRunId=lane))  # fmt: skip
            case _:
                # run.started, status, user.message, rate_limit, task.progress, and any
                # type newer than this gateway: AG-UI has no event of their own.
                out.append(event("CUSTOM", name=f"agentcast.{kind}", value=data,
                                  subagentRunId=lane))  # fmt: skip
        return [e for e in out if e]

    def _run_queued(self, session: str, number: int, data: Json) -> list[Json]:
        out: list[Json] = []
        if session in self._runs:  # the last run never closed: end it loudly before the next
            out.append(event("RUN_ERROR", message="the run ended without a terminal event",
                              code="agentcast.unclosed_run"))  # fmt: skip
        run_id = f"{session}:{number}"
        user = {"id": f"{run_id}:user", "role": "user", "content": str(data.get("prompt", ""))}
        started = event("RUN_STARTED", threadId=session, runId=run_id,
                         protocolVersion=PROTOCOL_VERSION,
                         input={"threadId": session, "runId": run_id,
                                "protocolVersion": PROTOCOL_VERSION, "messages": [user]})  # fmt: skip
        run = Run(session, run_id, started)
        if self.tracking:
            run.transcript = Transcript()
            run.transcript.add(user)
        self._runs[session] = run
        out.append(started)
        return out

    def _message_started(self, run: Run, key: str | None, data: Json, item: Item) -> list[Json]:
        lane = run.lane(key)
        out = self._close_lane(run, key, text=True, tools=False)
        if lane.step is not None:
            out.append(self._step_finished(run, key, {}))
        lane.message_id = str(data.get("message_id") or f"{run.run_id}:msg:{item.seq}")
        lane.step = lane.message_id
        out.append(event("STEP_STARTED", stepName=lane.step, subagentRunId=key))
        return out

    def _step_finished(self, run: Run, key: str | None, data: Json) -> Json:
        lane = run.lane(key)
        if lane.step is None:
            return {}
        step, lane.step = lane.step, None
        extra = {"stop_reason": data.get("stop_reason"), "usage": data.get("usage")}
        return event("STEP_FINISHED", stepName=step, subagentRunId=key,
                      metadata={"agentcast": {k: v for k, v in extra.items() if v}} if
                      any(extra.values()) else None)  # fmt: skip

    def _message_id(self, run: Run, lane: Lane, item: Item) -> str:
        if lane.message_id is None:
            lane.message_id = f"{run.run_id}:msg:{item.seq}"
        return lane.message_id

    def _text_delta(self, run: Run, key: str | None, text: str, item: Item) -> list[Json]:
        lane = run.lane(key)
        out: list[Json] = []
        if lane.text is None:
            lane.text = self._message_id(run, lane, item)
            out.append(event("TEXT_MESSAGE_START", messageId=lane.text, role="assistant",
                              subagentRunId=key))  # fmt: skip
        if run.transcript is not None:
            lane.text_parts.append(text)
        out.append(event("TEXT_MESSAGE_CONTENT", messageId=lane.text, delta=text,
                          subagentRunId=key))  # fmt: skip
        return out

    def _text_completed(self, run: Run, key: str | None, data: Json, item: Item) -> list[Json]:
        lane = run.lane(key)
        out: list[Json] = []
        if lane.text is None:  # a message that was not streamed: all of it at once
            out += self._text_delta(run, key, str(data.get("text", "")), item)
        out.append(self._end_text(run, key, lane))
        return out

    def _end_text(self, run: Run, key: str | None, lane: Lane) -> Json:
        message_id, lane.text = lane.text, None
        if run.transcript is not None and message_id is not None:
            run.transcript.text(message_id, key, "".join(lane.text_parts))
        lane.text_parts = []
        return event("TEXT_MESSAGE_END", messageId=message_id, subagentRunId=key)

    def _thinking_delta(
        self, run: Run, key: str | None, data: Json, text: str, item: Item
    ) -> list[Json]:
        lane = run.lane(key)
        out: list[Json] = []
        if lane.reasoning is None:
            base = self._message_id(run, lane, item)  # unique per lane, like its texts
            lane.reasoning = f"{base}:thinking:{data.get('index', 0)}"
            out += open_reasoning(lane.reasoning, key)
        if run.transcript is not None:
            lane.reasoning_parts.append(text)
        out.append(event("REASONING_MESSAGE_CONTENT", messageId=lane.reasoning, delta=text,
                          subagentRunId=key))  # fmt: skip
        return out

    def _thinking_completed(self, run: Run, key: str | None, data: Json, item: Item) -> list[Json]:
        lane = run.lane(key)
        out: list[Json] = []
        if lane.reasoning is None:
            out += self._thinking_delta(run, key, data, str(data.get("text", "")), item)
        return out + self._end_reasoning(run, key, lane)

    def _end_reasoning(self, run: Run, key: str | None, lane: Lane) -> list[Json]:
        message_id, lane.reasoning = lane.reasoning, None
        if run.transcript is not None and message_id is not None:
            run.transcript.add({"id": message_id, "role": "reasoning",
                                "content": "".join(lane.reasoning_parts),
                                **({"subagentRunId": key} if key else {})})  # fmt: skip
        lane.reasoning_parts = []
        return [event("REASONING_MESSAGE_END", messageId=message_id, subagentRunId=key),
                event("REASONING_END", messageId=message_id, subagentRunId=key)]  # fmt: skip

    def _tool_started(self, run: Run, key: str | None, data: Json) -> list[Json]:
        call_id = str(data.get("tool_use_id"))
        if call_id in run.tools:
            return []
        tool = Tool(str(data.get("name", "")), key, run.lane(key).message_id)
        run.tools[call_id] = tool
        return [tool_start(call_id, tool)]

    def _tool_input(self, run: Run, data: Json) -> list[Json]:
        call_id = str(data.get("tool_use_id"))
        tool = run.tools.get(call_id)
        delta = str(data.get("partial_json") or "")
        if tool is None or not delta:
            return []
        tool.args.append(delta)
        return [event("TOOL_CALL_ARGS", toolCallId=call_id, delta=delta, subagentRunId=tool.lane)]

    def _tool_called(self, run: Run, key: str | None, data: Json) -> list[Json]:
        call_id = str(data.get("tool_use_id"))
        out = [] if call_id in run.tools else self._tool_started(run, key, data)
        tool = run.tools.get(call_id)
        if tool is None:
            return out
        if not tool.args and data.get("input") is not None:
            args = json.dumps(data.get("input"))
            tool.args.append(args)
            out.append(event("TOOL_CALL_ARGS", toolCallId=call_id, delta=args,
                              subagentRunId=tool.lane))  # fmt: skip
        return out + [self._end_tool(run, call_id)]

    def _end_tool(self, run: Run, call_id: str) -> Json:
        tool = run.tools.pop(call_id)
        if run.transcript is not None:
            parent = tool.parent_message_id or f"{call_id}:call"
            run.transcript.tool_call(parent, tool.lane, call_id, tool)
        return event("TOOL_CALL_END", toolCallId=call_id, subagentRunId=tool.lane)

    def _tool_result(self, run: Run, key: str | None, data: Json) -> Json:
        call_id = str(data.get("tool_use_id"))
        content = result_text(data.get("content"))
        is_error = bool(data.get("is_error"))
        if run.transcript is not None:
            run.transcript.add({"id": f"{call_id}:result", "role": "tool", "toolCallId": call_id,
                                "content": content, **({"error": content} if is_error else {}),
                                **({"subagentRunId": key} if key else {})})  # fmt: skip
        meta = {"is_error": is_error, "truncated": bool(data.get("truncated"))}
        return event("TOOL_CALL_RESULT", messageId=f"{call_id}:result", toolCallId=call_id,
                      content=content, role="tool", subagentRunId=key,
                      metadata={"agentcast": meta})  # fmt: skip

    def _subagent_started(self, run: Run, sub: str, data: Json, parent: str | None) -> Json:
        started = event("SUBAGENT_STARTED", subagentRunId=sub,
                         name=str(data.get("task_type") or "subagent"),
                         description=data.get("description"), parentToolCallId=sub,
                         parentSubagentRunId=parent if parent in run.subagents else None)  # fmt: skip
        run.subagents[sub] = started
        return started

    def _task_started(self, run: Run, key: str | None, data: Json) -> list[Json]:
        sub = data.get("tool_use_id")
        if not isinstance(sub, str):
            return [event("CUSTOM", name="agentcast.task.started", value=data, subagentRunId=key)]
        run.tasks[str(data.get("task_id"))] = sub
        if sub in run.subagents or sub in run.finished_subagents:
            return []
        return [self._subagent_started(run, sub, data, key)]

    def _task_completed(self, run: Run, key: str | None, data: Json) -> list[Json]:
        sub = data.get("tool_use_id") or run.tasks.get(str(data.get("task_id")))
        if not isinstance(sub, str) or sub not in run.subagents:
            return [event("CUSTOM", name="agentcast.task.completed", value=data,
                           subagentRunId=key)]  # fmt: skip
        return self._end_subagent(run, sub, data)

    def _end_subagent(self, run: Run, sub: str, data: Json) -> list[Json]:
        """A sub-agent ends: its own sub-agents first, then what is open in its lane."""
        out: list[Json] = []
        for child, started in list(run.subagents.items()):
            if started.get("parentSubagentRunId") == sub and child in run.subagents:
                out += self._end_subagent(run, child, {})
        out += self._close_lane(run, sub, text=True, tools=True)
        return [*out, self._subagent_ended(run, sub, data)]

    def _subagent_ended(self, run: Run, sub: str, data: Json) -> Json:
        del run.subagents[sub]
        run.finished_subagents.add(sub)
        summary = data.get("summary")
        if data.get("status") == "failed":
            return event("SUBAGENT_ERROR", subagentRunId=sub, message=str(summary or "failed"))
        return event("SUBAGENT_FINISHED", subagentRunId=sub, result=summary,
                      outcome={"type": "success"})  # fmt: skip

    def _close_lane(self, run: Run, key: str | None, *, text: bool, tools: bool) -> list[Json]:
        """END events for what is open in a lane (before its step, sub-agent or run ends)."""
        out: list[Json] = []
        if tools:
            out += [self._end_tool(run, c) for c, t in list(run.tools.items()) if t.lane == key]
        lane = run.lanes.get(key)
        if lane is None or not text:
            return out
        if lane.text is not None:
            out.append(self._end_text(run, key, lane))
        if lane.reasoning is not None:
            out += self._end_reasoning(run, key, lane)
        if tools and lane.step is not None:
            out.append(self._step_finished(run, key, {}))
        return out

    def _run_end(self, run: Run, kind: str, data: Json) -> list[Json]:
        del self._runs[run.thread_id]
        if kind == "run.failed" or (kind == "run.completed" and data.get("is_error")):
            message = data.get("error") or data.get("result") or data.get("subtype") or kind
            code = data.get("kind") or data.get("subtype")
            return [event("RUN_ERROR", message=str(message), code=code)]
        out: list[Json] = []
        for sub in list(run.subagents):
            if sub in run.subagents:  # not ended already as a child of an earlier one
                out += self._end_subagent(run, sub, {})
        out += self._close_lane(run, None, text=True, tools=True)
        if kind == "run.cancelled":
            out.append(event("RUN_FINISHED", threadId=run.thread_id, runId=run.run_id,
                              outcome={"type": "cancelled"},
                              metadata={"agentcast": {"reason": data.get("reason")}}))  # fmt: skip
            return out
        extra = {k: data.get(k) for k in ("total_cost_usd", "num_turns", "duration_ms",
                                           "duration_api_ms", "stop_reason", "subtype")}  # fmt: skip
        out.append(event("RUN_FINISHED", threadId=run.thread_id, runId=run.run_id,
                          result=data.get("result"), usage=token_usage(data.get("usage")),
                          metadata={"agentcast": {k: v for k, v in extra.items()
                                                      if v is not None}}))  # fmt: skip
        return out
