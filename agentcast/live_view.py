"""The live terminal view of one run for `agentcast run`: spinner, streamed text, tools, progress.

Finished lines print above a small live panel (rich's Live keeps it at the
bottom); the panel shows the line being streamed, what the agent is doing
with a spinner, and the progress bar from the metrics snapshot. At the end a
summary table replaces the panel.
"""

from __future__ import annotations

import time
from typing import Any, Self

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from agentcast.events import AnyEvent

_MAX_INPUT = 80


class RunView:
    """Feed it a run's events (and progress snapshots); it draws them as they come."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._partial = ""
        self._activity = "Starting"
        self._percent: float | None = None
        self._percent_source = ""
        self._eta_ms: int | None = None
        self._confidence: float | None = None
        self._tools: dict[str, tuple[str, float]] = {}
        self._tool_counts: dict[str, int] = {}
        self._spinner = Spinner("dots")
        self._live = Live(self._panel(), console=console, refresh_per_second=12, transient=True)

    def __enter__(self) -> Self:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live.is_started:
            self._flush_partial()
            self._live.__exit__(None, None, None)

    def progress(self, snapshot: dict[str, Any]) -> None:
        percent = snapshot.get("percent")
        if isinstance(percent, (int, float)):
            self._percent = float(percent)
            self._percent_source = str(snapshot.get("percent_source") or "")
            eta, confidence = snapshot.get("eta_ms"), snapshot.get("percent_confidence")
            self._eta_ms = eta if isinstance(eta, int) else None
            self._confidence = float(confidence) if isinstance(confidence, (int, float)) else None
        self._refresh()

    def feed(self, event: AnyEvent) -> None:
        data: dict[str, Any] = event.data if isinstance(event.data, dict) else {}
        match event.type:
            case "text.delta" if event.parent_tool_use_id is None:
                self._activity = "Writing"
                self._write(str(data.get("text", "")))
            case "thinking.delta":
                self._activity = "Thinking"
            case "status" | "message.started":
                self._activity = "Thinking"
            case "tool.called":
                self._flush_partial()
                name = str(data.get("name"))
                self._tools[str(data.get("tool_use_id"))] = (name, time.monotonic())
                self._tool_counts[name] = self._tool_counts.get(name, 0) + 1
                self._activity = f"Using {name}"
                self._print(f"[cyan]⏺ Using {escape(name)}[/] {escape(_brief(data.get('input')))}")
            case "tool.result":
                name, started = self._tools.pop(
                    str(data.get("tool_use_id")), ("tool", time.monotonic())
                )
                took = time.monotonic() - started
                verdict = "[red]failed[/]" if data.get("is_error") else "[green]done[/]"
                self._print(f"  [dim]{escape(name)}…[/] {verdict} [dim]({took:.1f}s)[/]")
                self._activity = "Thinking"
            case "run.failed":
                self._flush_partial()
                self._print(
                    f"[bold red]✘ {escape(str(data.get('kind')))}: {escape(str(data.get('error')))}[/]"
                )
            case "run.cancelled":
                self._flush_partial()
                self._print(f"[bold yellow]■ cancelled: {escape(str(data.get('reason')))}[/]")
        self._refresh()

    def summary(self, closing: AnyEvent, started: float) -> Table:
        data: dict[str, Any] = closing.data if isinstance(closing.data, dict) else {}
        usage = data.get("usage") or {}
        table = Table(title=f"{closing.session} · run {closing.run}", show_header=False)
        outcome = {"run.completed": "[green]completed[/]", "run.failed": "[red]failed[/]"}
        table.add_row("result", outcome.get(closing.type, "[yellow]cancelled[/]"))
        table.add_row(
            "duration", f"{data.get('duration_ms') or (time.monotonic() - started) * 1000:.0f} ms"
        )
        table.add_row("turns", str(data.get("num_turns", "–")))
        tools = ", ".join(f"{k} ×{v}" for k, v in sorted(self._tool_counts.items())) or "none"
        table.add_row("tools", tools)
        table.add_row(
            "tokens", f"{usage.get('input_tokens', 0)} in / {usage.get('output_tokens', 0)} out"
        )
        cost = data.get("total_cost_usd")
        table.add_row("cost", f"${cost:.4f}" if isinstance(cost, (int, float)) else "–")
        return table

    # -- drawing -------------------------------------------------------------------

    def _write(self, text: str) -> None:
        self._partial += text
        *done, self._partial = self._partial.split("\n")
        for line in done:
            self._live.console.print(line, markup=False, highlight=False)

    def _flush_partial(self) -> None:
        if self._partial:
            self._live.console.print(self._partial, markup=False, highlight=False)
            self._partial = ""

    def _print(self, markup: str) -> None:
        self._live.console.print(markup, highlight=False)

    def _refresh(self) -> None:
        self._live.update(self._panel())

    def _panel(self) -> RenderableType:
        self._spinner.update(text=Text(f" {self._activity}…", style="bold"))
        parts: list[RenderableType] = []
        if self._partial:
            parts.append(Text(self._partial))
        parts.append(self._spinner)
        if self._percent is not None:
            bar = Table.grid(padding=(0, 1))
            bar.add_row(
                ProgressBar(total=100, completed=self._percent, width=30),
                Text(self._progress_label(), style="dim"),
            )
            parts.append(bar)
        return Group(*parts)

    def _progress_label(self) -> str:
        """ "62% (estimate) · ~4.2s left · 70% sure": the ETA and confidence while the run goes on."""
        label = f"{self._percent:.0f}% ({self._percent_source})"
        if self._percent_source != "final":
            if self._eta_ms is not None:
                label += f" · ~{_eta(self._eta_ms)} left"
            if self._confidence is not None:
                label += f" · {self._confidence * 100:.0f}% sure"
        return label


def _eta(ms: int) -> str:
    seconds = ms / 1000
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def _brief(tool_input: object) -> str:
    if isinstance(tool_input, dict):
        for key in ("command", "file_path", "pattern", "description", "subject", "prompt"):
            if key in tool_input:
                text = str(tool_input[key]).replace("\n", " ")
                return text if len(text) <= _MAX_INPUT else text[: _MAX_INPUT - 1] + "…"
    return ""
