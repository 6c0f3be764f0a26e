"""The agent's own plan, from its todo tools (pure): TodoWrite lists, or TaskCreate/TaskUpdate tasks.

- `TodoWrite` input `{"todos": [{"content", "status", "activeForm"}]}`
  replaces the whole list each time.
- `TaskCreate` input `{"subject", "description", "activeForm"}` creates a
  task whose id only its result names ("Task #3 created successfully: ...");
  `TaskUpdate` input `{"taskId", "status"?: pending|in_progress|completed|
  deleted, ...}` changes one, and `deleted` removes it. This follows the
  bundled Claude Code CLI's own tracking of these tools (it too applies an
  update at the call and a creation at its result).

Percent = completed / total of the plan last changed.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal

import msgspec

_CREATED: Final = re.compile(r"Task #(\S+) created successfully")
_STATUSES: Final = frozenset({"pending", "in_progress", "completed"})


class Plan(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    kind: Literal["todos", "tasks"] = "todos"
    run: int = 0
    """The run that last changed the plan: an older run's plan says nothing about this one."""
    todos: tuple[str, ...] = ()
    tasks: dict[str, str] = {}
    creating: dict[str, str] = {}
    """TaskCreate calls waiting for the result that names their task id."""

    def percent(self) -> float | None:
        statuses = self.todos if self.kind == "todos" else tuple(self.tasks.values())
        if not statuses:
            return None
        done = sum(1 for s in statuses if s == "completed")
        return round(100.0 * done / len(statuses), 1)


EMPTY: Final = Plan()


def on_call(plan: Plan, name: str, tool_input: Any, tool_use_id: str, run: int) -> Plan:
    """The plan after a complete tool call (unchanged for other tools)."""
    if not isinstance(tool_input, dict):
        return plan
    match name:
        case "TodoWrite":
            todos = tool_input.get("todos")
            if not isinstance(todos, list):
                return plan
            statuses = tuple(_status(t.get("status")) for t in todos if isinstance(t, dict))
            return msgspec.structs.replace(plan, kind="todos", run=run, todos=statuses)
        case "TaskCreate":
            return msgspec.structs.replace(plan, creating={**plan.creating, tool_use_id: "pending"})
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
            return msgspec.structs.replace(plan, kind="tasks", run=run, tasks=tasks)
    return plan


def on_result(plan: Plan, tool_use_id: str, content: Any, is_error: bool, run: int) -> Plan:
    """The plan after a tool result: a TaskCreate's result names the new task."""
    if tool_use_id not in plan.creating:
        return plan
    creating = {k: v for k, v in plan.creating.items() if k != tool_use_id}
    found = None if is_error else _CREATED.search(_text(content))
    if found is None:
        return msgspec.structs.replace(plan, creating=creating)
    tasks = {**plan.tasks, found.group(1): "pending"}
    return msgspec.structs.replace(plan, kind="tasks", run=run, tasks=tasks, creating=creating)


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
