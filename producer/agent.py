"""One run of a real Claude agent: the SDK client, its messages, cancellation.

`AgentRun.execute()` starts the Claude Code CLI through `ClaudeSDKClient` with
partial messages on, sends the prompt, normalizes every message and emits the
events, and returns the run's closing event data. It never raises for agent
failures: a crash of the CLI becomes `run.failed`, a cancel `run.cancelled`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient, ResultMessage

from agentcast.errors import PublishFailed
from agentcast.events import (
    EventData,
    RunCancelledData,
    RunCompletedData,
    RunFailedData,
)
from agentcast.lifecycle import finished_before
from agentcast.policy import RunOptions
from producer.cli_guard import guarded_cli_path
from producer.normalize import Draft, Normalizer

logger = logging.getLogger(__name__)

Emit = Callable[[Draft], Awaitable[None]]

_STDERR_LINES = 20


class AgentRun:
    """Drives the CLI for one prompt; `cancel()` may be called from anywhere."""

    def __init__(
        self,
        *,
        session: str,
        prompt: str,
        options: RunOptions,
        workspace: Path,
        permission_mode: str,
        resume: str | None,
        env: dict[str, str],
        cancel_grace_s: float,
    ) -> None:
        self.session = session
        self._prompt = prompt
        self._options = options
        self._workspace = workspace
        self._permission_mode = permission_mode
        self._resume = resume
        self._env = env
        self._cancel_grace_s = cancel_grace_s
        self._cancel_reason: str | None = None
        self._cancelled = asyncio.Event()
        # The CLI explains its failures on stderr; the last lines go into run.failed.
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)

    def cancel(self, reason: str = "cancelled") -> None:
        if self._cancel_reason is None:
            self._cancel_reason = reason
            self._cancelled.set()

    def _on_stderr(self, line: str) -> None:
        self._stderr.append(line)
        logger.debug("claude[%s]: %s", self.session, line)

    def _sdk_options(self) -> ClaudeAgentOptions:
        return ClaudeAgentOptions(
            cwd=str(self._workspace),
            model=self._options.model,
            max_turns=self._options.max_turns,
            tools=list(self._options.allowed_tools),
            allowed_tools=list(self._options.allowed_tools),
            permission_mode=self._permission_mode,  # type: ignore[arg-type]
            include_partial_messages=True,
            setting_sources=[],
            env=self._env,
            resume=self._resume,
            stderr=self._on_stderr,
            # The CLI under a guard that ends it, and its tools, when the worker dies.
            cli_path=guarded_cli_path(),
        )

    async def execute(self, emit: Emit) -> EventData:
        """Run to the end; returns the closing event's data (not yet emitted)."""
        try:
            options = self._sdk_options()
        except OSError as exc:  # the CLI guard's script could not be written or trusted
            return RunFailedData(error=f"cannot start the CLI: {exc}", kind="sdk_error")
        client = ClaudeSDKClient(options)
        closing: EventData | None = None
        try:
            streaming = asyncio.ensure_future(self._stream(client, emit))
            if await finished_before(streaming, self._cancelled):
                closing = streaming.result()
            else:
                closing = await self._interrupt(client, streaming)
        except PublishFailed:  # DeliveryTimeout, WriterConflict: the run stops
            raise
        except Exception as exc:  # the CLI or SDK failed: the run fails, the worker lives on
            logger.exception("run of session %s failed", self.session)
            detail = "\n".join(self._stderr)
            closing = RunFailedData(
                error=f"{type(exc).__name__}: {exc}" + (f"\n{detail}" if detail else ""),
                kind="sdk_error",
            )
        finally:
            # Ends the CLI process; after a cancel nothing of the run may linger.
            await _disconnect(client)
        if self._cancel_reason is not None:
            return RunCancelledData(reason=self._cancel_reason)
        return closing

    async def _stream(self, client: ClaudeSDKClient, emit: Emit) -> EventData:
        normalizer = Normalizer()
        await client.connect()
        await client.query(self._prompt)
        async for message in client.receive_response():
            for draft in normalizer.feed(message):
                if isinstance(draft.data, (RunCompletedData, RunFailedData)):
                    return draft.data
                await emit(draft)
            if isinstance(message, ResultMessage):
                break
        return RunFailedData(error="the agent ended without a result", kind="cli_exited")

    async def _interrupt(
        self, client: ClaudeSDKClient, streaming: asyncio.Future[EventData]
    ) -> EventData:
        """Ask the agent to stop; give it a grace period, then stop reading."""
        try:
            await asyncio.wait_for(client.interrupt(), self._cancel_grace_s)
            await asyncio.wait_for(asyncio.shield(streaming), self._cancel_grace_s)
        except Exception as exc:  # noqa: BLE001 - timeout, or the CLI already gone
            logger.info("session %s: interrupt did not finish cleanly (%r)", self.session, exc)
        streaming.cancel()
        await asyncio.gather(streaming, return_exceptions=True)
        return RunCancelledData(reason=self._cancel_reason or "cancelled")


async def _disconnect(client: ClaudeSDKClient) -> None:
    try:
        await asyncio.wait_for(client.disconnect(), 10)
    except Exception as exc:  # noqa: BLE001 - the run is over; a stuck CLI must not keep it open
        logger.warning("disconnecting the CLI failed: %r", exc)
