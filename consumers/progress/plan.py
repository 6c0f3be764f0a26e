"""The agent's own plan, from its todo tools (pure): TodoWrite lists, or TaskCreate/TaskUpdate tasks.

- `TodoWrite` input `{"todos": [{"content", "status", "activeForm"}]}`
  replaces the whole list each time.
- `TaskCreate` input `{"subject", "description", "activeForm"}` creates a
  task whose id only its result names ("Task #3 created successfully: ...");
  `TaskUpdate` input `{"taskId", "status"?: pending|in_progress|completed|
  deleted, ...}` changes one, and `deleted` removes it. This follows the
  bundled Claude Code CLI's own tracking of these tools (it too applies an
  update at the call and a creation at its result).

Percent accounts for time: each item weighs what it takes. A completed item
weighs the time it took in this run; an open one what items like it took
before (`expect`, filled from the history by the reducer), else the typical
item of this run, else `_COLD_ITEM_MS`. The item in progress counts the
time it has been worked on, up to `_WITHIN_CAP` of its weight:

    fraction = (done time + time in the current item) / (done time + expected time of the rest)

An item starts when it is marked in_progress (else when the previous one
completed, or the plan appeared) and ends when marked completed.
"""

from __future__ import annotations

import re
import statistics
from typing import Any, Final, Literal

import msgspec

from consumers.progress.history import item_key

_CREATED: Final = re.compile(r"Task #(\S+) created successfully")
_STATUSES: Final = frozenset({"pending", "in_progress", "completed"})
_COLD_ITEM_MS: Final = 4000.0
_WITHIN_CAP: Final = 0.9
_MIN_ITEM_MS: Final = 100.0
_replace = msgspec.structs.replace


class Plan(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    kind: Literal["todos", "tasks"] = "todos"
    run: int = 0
    """The run that last changed the plan: an older run's plan says nothing about this one."""
    todos: tuple[str, ...] = ()
    tasks: dict[str, str] = {}
    creating: dict[str, str] = {}
    """TaskCreate calls waiting for the result that names their task id: their subjects."""
    # Added for time weighting (trailing, with defaults: older stored plans still decode).
    labels: tuple[str, ...] = ()
    """The todos' normalised texts, beside `todos`."""
    names: dict[str, str] = {}
    """Task id -> normalised subject."""
    since: int = 0
    """When the last item completed (or the plan appeared): the start of an item never marked in progress."""
    started: dict[str, int] = {}
    """Item -> when it was marked in_progress."""
    done_ms: dict[str, int] = {}
    """Item -> how long it took, this run."""
    expect: dict[str, float] = {}
    """Item -> how long items like it took before (from the history)."""

    def items(self) -> list[tuple[str, str]]:
        """(item, status) in plan order."""
        if self.kind == "todos":
            labels = self.labels if len(self.labels) == len(self.todos) else ("",) * len(self.todos)
            return list(zip(labels, self.todos, strict=True))
        return [(self.names.get(k, k), st) for k, st in self.tasks.items()]

    def fraction(self, now: int) -> float | None:
        """The time-weighted fraction of the plan done at `now` (ns); None without items."""
        items = self.items()
        if not items:
            return None
        # Every item weighs at least _MIN_ITEM_MS: items ticked off together still count as steps.
        expect = {k: max(_MIN_ITEM_MS, v) for k, v in self.expect.items()}
        took = {k: max(_MIN_ITEM_MS, v) for k, v in self.done_ms.items()}
        known = [*expect.values(), *took.values()]
        typical = statistics.median(known) if known else _COLD_ITEM_MS
        done = sum(took.get(label, typical) for label, st in items if st == "completed")
        open_items = [(label, st) for label, st in items if st != "completed"]
        todo = sum(expect.get(label, typical) for label, _ in open_items)
        current = next((label for label, st in open_items if st == "in_progress"), None)
        if current is None and open_items:
            current = open_items[0][0]
        if current is not None:
            weight = expect.get(current, typical)
            since = self.started.get(current, self.since)
            within = min(_WITHIN_CAP * weight, max(0.0, (now - since) / 1e6))
            done, todo = done + within, todo - within
        return done / (done + todo) if done + todo > 0 else 1.0


EMPTY: Final = Plan()


def on_call(plan: Plan, name: str, tool_input: Any, tool_use_id: str, run: int, ts: int) -> Plan:
    """The plan after a complete tool call (unchanged for other tools)."""
    if not isinstance(tool_input, dict):
        return plan
    match name:
        case "TodoWrite":
            todos = tool_input.get("todos")
            if not isinstance(todos, list):
                return plan
            entries = [t for t in todos if isinstance(t, dict)]
            statuses = tuple(_status(t.get("status")) for t in entries)
            labels = tuple(item_key(str(t.get("content") or "")) for t in entries)
            after = _replace(_for_run(plan, run, ts), kind="todos", todos=statuses, labels=labels)
            return _timed(plan, after, ts)
        case "TaskCreate":
            subject = item_key(str(tool_input.get("subject") or ""))
            return _replace(plan, creating={**plan.creating, tool_use_id: subject})
        case "TaskUpdate":
            task_id = tool_input.get("taskId")
            if not isinstance(task_id, str):
                return plan
            status = tool_input.get("status")
            tasks = dict(plan.tasks)
            if status == "deleted":
                tasks.pop(task_id, None)
            else:
                tasks[task_id] = (
                    _status(status) if status is not None else tasks.get(task_id, "pending")
                )
            after = _replace(_for_run(plan, run, ts), kind="tasks", tasks=tasks)
            return _timed(plan, after, ts)
    return plan


def on_result(
    plan: Plan, tool_use_id: str, content: Any, is_error: bool, run: int, ts: int
) -> Plan:
    """The plan after a tool result: a TaskCreate's result names the new task."""
    if tool_use_id not in plan.creating:
        return plan
    subject = plan.creating[tool_use_id]
    creating = {k: v for k, v in plan.creating.items() if k != tool_use_id}
    found = None if is_error else _CREATED.search(_text(content))
    if found is None:
        return _replace(plan, creating=creating)
    task_id = found.group(1)
    after = _for_run(plan, run, ts)
    tasks = {**after.tasks, task_id: "pending"}
    names = {**after.names, task_id: subject}
    return _replace(after, kind="tasks", tasks=tasks, names=names, creating=creating)


def _for_run(plan: Plan, run: int, ts: int) -> Plan:
    """The plan about to change in `run`: a plan from an earlier run restarts its clocks."""
    if plan.run == run and plan.since:
        return plan
    return _replace(plan, run=run, since=ts, started={}, done_ms={})


def _timed(before: Plan, after: Plan, ts: int) -> Plan:
    """Start the clocks of items newly in progress; record how long newly completed ones took."""
    was = dict(before.items()) if before.run == after.run else {}
    started = dict(after.started)
    done_ms = dict(after.done_ms)
    since = after.since
    for label, status in after.items():
        if status == "in_progress" and label not in started:
            started[label] = ts
        elif status == "completed" and was.get(label, "pending") != "completed":
            done_ms[label] = max(0, (ts - started.get(label, since)) // 1_000_000)
            since = ts
    return _replace(after, started=started, done_ms=done_ms, since=since)


def _status(value: object) -> str:
    return value if isinstance(value, str) and value in _STATUSES else "pending"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str)
        )
    return ""
