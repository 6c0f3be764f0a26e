"""One run of a real Claude agent: the SDK client, its messages, cancellation.

`AgentRun.execute()` starts the Claude Code CLI through `ClaudeSDKClient` with
partial messages on, sends the prompt, normalizes every message and emits the
events, and returns the run's closing event data. It never raises for agent
failures: a crash of the CLI becomes `run.failed`, a cancel `run.cancelled`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient
from claude_agent_sdk import ResultMessage

from agentcast.errors import DeliveryTimeout
from agentcast.events import (
    EventData,
    RunCancelledData,
    RunCompletedData,
    RunFailedData,
)
from producer.normalize import Draft, Normalizer
from producer.policy import RunOptions

logger = logging.getLogger(__name__)

Emit = Callable[[Draft], Awaitable[None]]

_CLAUDE_SESSION_NAMESPACE = uuid.UUID("5b0f3c1e-6f1d-4e43-9a57-0c9d0b7f3a11")


def claude_session_id(session: str) -> str:
    """The Claude Code session id of an agentcast session: stable, so runs resume it."""
    return str(uuid.uuid5(_CLAUDE_SESSION_NAMESPACE, session))


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
        resume: bool,
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

    def cancel(self, reason: str = "cancelled") -> None:
        if self._cancel_reason is None:
            self._cancel_reason = reason
            self._cancelled.set()

    def _sdk_options(self) -> ClaudeAgentOptions:
        claude_id = claude_session_id(self.session)
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
            resume=claude_id if self._resume else None,
            session_id=None if self._resume else claude_id,
            stderr=lambda line: logger.debug("claude[%s]: %s", self.session, line),
        )

    async def execute(self, emit: Emit) -> EventData:
        """Run to the end; returns the closing event's data (not yet emitted)."""
        client = ClaudeSDKClient(self._sdk_options())
        closing: EventData | None = None
        try:
            streaming = asyncio.ensure_future(self._stream(client, emit))
            cancelled = asyncio.ensure_future(self._cancelled.wait())
            done, _ = await asyncio.wait({streaming, cancelled}, return_when=asyncio.FIRST_COMPLETED)
            if streaming in done:
                cancelled.cancel()
                closing = streaming.result()
            else:
                closing = await self._interrupt(client, streaming)
        except DeliveryTimeout:
            raise
        except Exception as exc:  # the CLI or SDK failed: the run fails, the worker lives on
            logger.exception("run of session %s failed", self.session)
            closing = RunFailedData(error=f"{type(exc).__name__}: {exc}", kind="sdk_error")
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

    async def _interrupt(self, client: ClaudeSDKClient, streaming: asyncio.Future[EventData]) -> EventData:
        """Ask the agent to stop; give it a grace period, then stop reading."""
        try:
            await asyncio.wait_for(client.interrupt(), self._cancel_grace_s)
            await asyncio.wait_for(asyncio.shield(streaming), self._cancel_grace_s)
        except Exception as exc:  # timeout, or the CLI already gone
            logger.info("session %s: interrupt did not finish cleanly (%r)", self.session, exc)
        streaming.cancel()
        await asyncio.gather(streaming, return_exceptions=True)
        return RunCancelledData(reason=self._cancel_reason or "cancelled")


async def _disconnect(client: ClaudeSDKClient) -> None:
    try:
        await asyncio.wait_for(client.disconnect(), 10)
    except Exception as exc:
        logger.warning("disconnecting the CLI failed: %r", exc)
