"""Read what a scenario needs out of a Messages API request body (pure).

The scripted model is stateless: everything (which prompt, which turn, the
working directory, the tools on offer) is derived from the request, exactly
as the real API sees it. Shapes below are what Claude Code 2.1.x sends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Conversation", "read_conversation"]

# Claude Code puts its environment in a system turn or the system prompt:
# " - Primary working directory: /tmp/ws" (older versions: "Working directory: /tmp/ws").
_CWD_RE = re.compile(r"(?:Primary working directory|Working directory):\s*(\S[^\n]*)")
# Tools hidden behind ToolSearch are listed by name, one a line, after this header.
_DEFERRED_RE = re.compile(
    r"deferred tools are now available via ToolSearch[^\n]*:\n((?:[\w-]+\n?)+)"
)
_REMINDER_PREFIX = "<system-reminder>"
_REMINDER_RE = re.compile(r"\s*<system-reminder>.*?</system-reminder>", re.DOTALL)
# TaskCreate answers "Task #3 created successfully: ..."; TaskUpdate takes that id.
_TASK_ID_RE = re.compile(r"Task #(\S+?) created")


@dataclass(frozen=True, slots=True)
class Conversation:
    model: str
    stream: bool
    # The latest user text prompt, and the first one of the conversation.
    prompt: str
    first_prompt: str
    # Assistant messages since `prompt`: 0 on the first request for it.
    turn: int
    # Tool names of the assistant messages since `prompt`, one tuple per message.
    turn_tools: tuple[tuple[str, ...], ...]
    cwd: str
    tools: frozenset[str]
    deferred_tools: frozenset[str]
    # (tool name, result text) in the order of the calls, and the ids TaskCreate returned.
    tool_results: tuple[tuple[str, str], ...]
    created_tasks: tuple[str, ...]
    # Rough size of the request in characters, split at the cacheable prefix.
    prefix_chars: int
    suffix_chars: int

    @property
    def offered_tools(self) -> frozenset[str]:
        return self.tools | self.deferred_tools


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def _texts(content: Any) -> list[str]:
    return [str(b.get("text", "")) for b in _blocks(content) if b.get("type") == "text"]


def _prompt_text(message: dict[str, Any]) -> str | None:
    """The user's own words in a user message, or None for tool results and reminders."""
    if message.get("role") != "user":
        return None
    blocks = _blocks(message.get("content"))
    # Text next to tool results is the CLI's own annotation ("Tool loaded."), not the user.
    if any(b.get("type") == "tool_result" for b in blocks):
        return None
    parts = [
        str(b.get("text", ""))
        for b in blocks
        if b.get("type") == "text"
        and not str(b.get("text", "")).lstrip().startswith(_REMINDER_PREFIX)
    ]
    text = "\n".join(p for p in parts if p.strip())
    return text or None


def _tool_result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    text = content if isinstance(content, str) else "\n".join(_texts(content))
    # The CLI appends <system-reminder> blocks to tool output; a model quoting
    # the output would not repeat them.
    return _REMINDER_RE.sub("", text).strip()


def _all_text(body: dict[str, Any]) -> str:
    chunks = _texts(body.get("system"))
    for message in body.get("messages", []):
        if isinstance(message, dict):
            chunks.extend(_texts(message.get("content")))
    return "\n".join(chunks)


def read_conversation(body: dict[str, Any]) -> Conversation:
    """Derive the scenario inputs from a request body; tolerant of any shape."""
    messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
    prompt_positions = [i for i, m in enumerate(messages) if _prompt_text(m) is not None]
    last = prompt_positions[-1] if prompt_positions else -1
    prompt = (_prompt_text(messages[last]) or "") if last >= 0 else ""
    first_prompt = (_prompt_text(messages[prompt_positions[0]]) or "") if prompt_positions else ""

    # Consecutive assistant messages count as one turn: they would be one API
    # response split in storage, and only a user message (tool results) starts the next.
    turn_tools: list[list[str]] = []
    previous_role = ""
    for message in messages[last + 1 :]:
        role = message.get("role")
        if role == "assistant":
            if previous_role != "assistant":
                turn_tools.append([])
            turn_tools[-1].extend(
                str(b.get("name", ""))
                for b in _blocks(message.get("content"))
                if b.get("type") == "tool_use"
            )
        if role in ("user", "assistant"):
            previous_role = str(role)

    results: dict[str, str] = {}
    calls: list[tuple[str, str]] = []
    for message in messages:
        for block in _blocks(message.get("content")):
            if block.get("type") == "tool_result":
                results[str(block.get("tool_use_id"))] = _tool_result_text(block)
            elif block.get("type") == "tool_use":
                calls.append((str(block.get("id")), str(block.get("name"))))
    # In call order: parallel calls may finish, and be reported, in any order.
    tool_results = tuple((name, results[call_id]) for call_id, name in calls if call_id in results)
    created_tasks = tuple(
        match.group(1)
        for call_id, name in calls
        if name == "TaskCreate" and (match := _TASK_ID_RE.search(results.get(call_id, "")))
    )

    text = _all_text(body)
    cwd_match = _CWD_RE.search(text)
    deferred: set[str] = set()
    for match in _DEFERRED_RE.finditer(text):
        deferred.update(line.strip() for line in match.group(1).splitlines() if line.strip())
    tools = frozenset(
        str(t["name"]) for t in body.get("tools", []) if isinstance(t, dict) and "name" in t
    )

    prefix_chars = len(str(body.get("system", ""))) + len(str(body.get("tools", "")))
    return Conversation(
        model=str(body.get("model", "")),
        stream=bool(body.get("stream", False)),
        prompt=prompt,
        first_prompt=first_prompt,
        turn=len(turn_tools),
        turn_tools=tuple(tuple(names) for names in turn_tools),
        cwd=cwd_match.group(1).strip() if cwd_match else "",
        tools=tools,
        deferred_tools=frozenset(deferred) - tools,
        tool_results=tool_results,
        created_tasks=created_tasks,
        prefix_chars=prefix_chars,
        suffix_chars=len(str(body.get("messages", ""))),
    )
