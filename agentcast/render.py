"""The terminal view of an event stream, shared by `agentcast tail` (live) and `replay` (archive).

    renderer = Renderer(Console(), json=False)
    for event in events:          # AnyEvent, e.g. from codec.decode_loose
        renderer.feed(event)
    renderer.close()

Text streams inline as it arrives; tools show as `⏺ Name(input)` then
`  ⎿ result`; sub-agent events are indented; the run ends with a summary
line. `json=True` prints each envelope as one JSON line instead.
"""

from __future__ import annotations

from typing import Any, Final

from rich.console import Console
from rich.markup import escape

from agentcast.codec import encode
from agentcast.events import AnyEvent

_INPUT_KEYS: Final = (
    "command",
    "file_path",
    "path",
    "pattern",
    "url",
    "query",
    "description",
    "subject",
)
_MAX_INLINE: Final = 120


class Renderer:
    """Prints events one at a time; keeps only what inline streaming needs."""

    def __init__(self, console: Console, *, json: bool = False) -> None:
        self.console = console
        self.json = json
        self._inline = False
        self._streamed: set[str | None] = set()

    def feed(self, event: AnyEvent) -> None:
        if self.json:
            self.console.print(
                encode(event).decode(), markup=False, highlight=False, soft_wrap=True
            )
            return
        data: dict[str, Any] = event.data if isinstance(event.data, dict) else {}
        sub = event.parent_tool_use_id
        match event.type:
            case "text.delta" | "thinking.delta":
                self._stream(data.get("text", ""), sub, dim=event.type == "thinking.delta")
            case "text.completed":
                if sub not in self._streamed:
                    self._stream(data.get("text", ""), sub, dim=False)
                self._end_inline()
            case "message.started":
                self._streamed.discard(sub)
            case (
                "message.completed"
                | "thinking.completed"
                | "status"
                | "tool.started"
                | "tool.input.delta"
            ):
                pass
            case "tool.called":
                self._line(
                    f"[bold cyan]⏺ {escape(str(data.get('name')))}[/]({escape(_summary(data.get('input')))})",
                    sub,
                )
            case "tool.result":
                style = "red" if data.get("is_error") else "dim"
                self._line(f"[{style}]  ⎿ {escape(_first_line(data.get('content')))}[/]", sub)
            case "run.queued":
                self._line(
                    f"[bold]▶ run {event.run}[/] · {escape(_clip(str(data.get('prompt', ''))))}",
                    sub,
                )
            case "run.started":
                self._line(
                    f"[dim]  model {escape(str(data.get('model')))} · {escape(str(data.get('cwd')))}[/]",
                    sub,
                )
            case "user.message":
                self._line(f"[bold]› {escape(_clip(str(data.get('text', ''))))}[/]", sub)
            case "run.completed":
                self._line(f"[bold green]✔ completed[/] · {_totals(data)}", sub)
            case "run.failed":
                kind, error = data.get("kind"), _clip(str(data.get("error", "")))
                self._line(f"[bold red]✘ failed[/] ({escape(str(kind))}): {escape(error)}", sub)
            case "run.cancelled":
                self._line(
                    f"[bold yellow]■ cancelled[/]: {escape(str(data.get('reason', '')))}", sub
                )
            case "rate_limit":
                self._line(f"[yellow]⏸ rate limit {escape(str(data.get('status')))}[/]", sub)
            case "task.started" | "task.progress" | "task.completed":
                what = data.get("description") or data.get("summary") or data.get("status") or ""
                self._line(f"[dim]  ↳ {event.type} {escape(_clip(str(what)))}[/]", sub)
            case _:
                self._line(f"[dim]· {escape(event.type)}[/]", sub)

    def close(self) -> None:
        self._end_inline()

    # -- output ----------------------------------------------------------------------

    def _stream(self, text: str, sub: str | None, *, dim: bool) -> None:
        if not text:
            return
        if not self._inline and sub:
            self.console.print("  │ ", end="", style="dim", highlight=False)
        self._streamed.add(sub)
        self.console.print(
            text, end="", style="dim italic" if dim else None, markup=False, highlight=False
        )
        self._inline = not text.endswith("\n")

    def _line(self, markup: str, sub: str | None) -> None:
        self._end_inline()
        self.console.print(("[dim]  │ [/]" if sub else "") + markup, highlight=False)

    def _end_inline(self) -> None:
        if self._inline:
            self.console.print()
            self._inline = False


def _clip(text: str, limit: int = _MAX_INLINE) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _summary(tool_input: object) -> str:
    if isinstance(tool_input, dict):
        for key in _INPUT_KEYS:
            if isinstance(tool_input.get(key), str):
                return _clip(tool_input[key], 80)
        if isinstance(tool_input.get("todos"), list):
            return f"{len(tool_input['todos'])} todos"
        return _clip(encode(tool_input).decode(), 80) if tool_input else ""
    return ""


def _first_line(content: object) -> str:
    if isinstance(content, list):
        texts = [b.get("text", "") for b in content if isinstance(b, dict)]
        content = "\n".join(t for t in texts if isinstance(t, str))
    text = content if isinstance(content, str) else ("" if content is None else str(content))
    lines = text.strip().splitlines()
    first = _clip(lines[0], 100) if lines else "(no output)"
    return first + (f" (+{len(lines) - 1} lines)" if len(lines) > 1 else "")


def _totals(data: dict[str, Any]) -> str:
    parts = [f"{data.get('num_turns', 0)} turns", f"{(data.get('duration_ms') or 0) / 1000:.1f}s"]
    cost = data.get("total_cost_usd")
    if isinstance(cost, int | float):
        parts.append(f"${cost:.4f}")
    return " · ".join(parts)
