"""A session held by a worker: its publisher, its control subject, its runs in turn.

The worker that claims a session keeps it while a run is in progress and for
`session_hold_s` after, answering `agentcast.ctl.<session>`: `cancel` stops
the current run, `message` starts the next run of the same conversation (the
CLI resumes its transcript), `status` says what it is doing. When the hold
ends, the session is released; a later follow-up arrives as a run request
instead, and any worker resumes it the same way: each run's transcript is
saved to the object store before its closing event, and restored from there
by a worker that does not have it (producer/transcripts.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError

from agentcast.codec import control_request_decoder, encode
from agentcast.control import ControlReply
from agentcast.errors import PolicyViolation, PublishFailed
from agentcast.events import (
    EventData,
    RunFailedData,
    RunQueuedData,
    RunStartedData,
    UserMessageData,
)
from agentcast.lifecycle import finished_before
from agentcast.policy import RunOptions, resolve_options, validate_prompt
from agentcast.settings import Settings
from agentcast.subjects import ctl_subject
from producer.agent import AgentRun
from producer.normalize import Draft
from producer.publisher import SessionPublisher
from producer.transcripts import TranscriptStore

logger = logging.getLogger(__name__)


class Conversation:
    """One session while this worker holds it."""

    def __init__(
        self,
        nc: Client,
        settings: Settings,
        session: str,
        publisher: SessionPublisher,
        *,
        first_run: int,
        env: dict[str, str],
        on_release: Callable[[Conversation], None],
    ) -> None:
        self.session = session
        self.run = first_run
        self.publisher = publisher
        self._nc = nc
        self._settings = settings
        self._env = env
        self._on_release = on_release
        self._current: AgentRun | None = None
        self._options: RunOptions | None = None
        self.claude_session: str | None = None
        """The Claude Code session this conversation resumes (from its run.started)."""
        self.transcripts: TranscriptStore | None = None
        """Where transcripts are saved after each run and restored from before a resume."""
        self._next: asyncio.Queue[tuple[str, RunOptions]] = asyncio.Queue()
        self._ctl: Subscription | None = None
        self._hold_ended = asyncio.Event()
        self.workspace = settings.resolved_workspace_root() / session

    @property
    def running(self) -> bool:
        return self._current is not None

    async def open(self) -> None:
        """Answer control requests from now on (call before claiming the session)."""
        self._ctl = await self._nc.subscribe(ctl_subject(self.session), cb=self._on_control)

    async def serve(self, prompt: str, options: RunOptions, *, slots: asyncio.Semaphore) -> None:
        """Run the claimed run, then any follow-ups, then hold and release.

        The caller holds one of `slots` for the first run; follow-ups take
        one each, so the worker never runs more agents than it has slots.
        """
        try:
            try:
                await self._execute(prompt, options)
            finally:
                slots.release()
            while (follow_up := await self._next_follow_up()) is not None:
                prompt, options = follow_up
                self.run += 1
                await self.publisher.emit(RunQueuedData(prompt=prompt, options={}), run=self.run)
                await self.publisher.emit(UserMessageData(text=prompt), run=self.run)
                async with slots:
                    await self._execute(prompt, options)
        finally:
            await self._release()

    def end_hold(self) -> None:
        """Release the session as soon as no run is in progress (worker shutdown)."""
        self._hold_ended.set()

    async def _next_follow_up(self) -> tuple[str, RunOptions] | None:
        if self.publisher.lost_session:
            return None  # another writer has the session: release it now, hold nothing
        if not self._next.empty():
            return self._next.get_nowait()
        getting = asyncio.ensure_future(self._next.get())
        if await finished_before(getting, self._hold_ended, self._settings.session_hold_s):
            return getting.result()
        getting.cancel()
        return None

    def cancel(self, reason: str) -> bool:
        if self._current is None:
            return False
        self._current.cancel(reason)
        return True

    async def fail_queued(self, error: str, kind: str) -> None:
        """Close a claimed run that cannot start (policy), as the spec asks."""
        await self._close_run(RunFailedData(error=error, kind=kind))
        await self._release()

    async def _execute(self, prompt: str, options: RunOptions) -> None:
        self.workspace.mkdir(parents=True, exist_ok=True)
        if self.transcripts is not None and self.claude_session:
            try:
                self.claude_session = await self.transcripts.restore(
                    self.session, self.claude_session, self.workspace
                )
            except (NatsError, OSError) as exc:  # fail loudly rather than forget the past
                error = f"the conversation's transcript could not be restored: {exc!r}"
                await self._close_run(RunFailedData(error=error, kind="transcript_unavailable"))
                return
        agent = AgentRun(
            session=self.session,
            prompt=prompt,
            options=options,
            workspace=self.workspace,
            permission_mode=self._settings.permission_mode,
            resume=self.claude_session,
            env=self._env,
            cancel_grace_s=self._settings.cancel_grace_s,
        )
        self._current = agent
        self._options = options
        run = self.run

        async def emit(draft: Draft) -> None:
            if isinstance(draft.data, RunStartedData) and draft.parent_tool_use_id is None:
                self.claude_session = draft.data.claude_session_id or self.claude_session
            await self.publisher.emit(
                draft.data, run=run, parent_tool_use_id=draft.parent_tool_use_id
            )

        try:
            closing = await agent.execute(emit)
        except PublishFailed as exc:  # kind: delivery_timeout or writer_conflict
            closing = RunFailedData(error=str(exc), kind=exc.code)
        finally:
            self._current = None
        if self.transcripts is not None:
            # Before the closing event: a follow-up may start elsewhere right after it.
            await self.transcripts.save(self.session, self.claude_session, self.workspace)
        await self._close_run(closing)

    async def _close_run(self, closing: EventData) -> None:
        await self.publisher.emit(closing, run=self.run, after_failure=True)
        try:
            await self.publisher.drain()
        except PublishFailed:
            logger.error(
                "session %s run %d: closing event not yet delivered", self.session, self.run
            )

    async def abandon(self) -> None:
        """Give the session up before any run started (the claim failed)."""
        await self._release()

    async def _release(self) -> None:
        if self._ctl is not None:
            await self._ctl.unsubscribe()
            self._ctl = None
        try:
            await self.publisher.close()
        except PublishFailed as exc:
            logger.error("session %s released with undelivered events: %s", self.session, exc)
        self._on_release(self)

    async def _on_control(self, msg: Msg) -> None:
        reply = self._control(msg.data)
        if msg.reply:
            await self._nc.publish(msg.reply, encode(reply))

    def _control(self, raw: bytes) -> ControlReply:
        try:
            request = control_request_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            return ControlReply(ok=False, error=f"invalid control request: {exc}")
        match request.op:
            case "cancel":
                if self.cancel("cancelled by request"):
                    return ControlReply(ok=True, run=self.run)
                return ControlReply(ok=False, error="no run in progress", state="idle")
            case "status":
                return ControlReply(
                    ok=True, run=self.run, state="running" if self.running else "idle"
                )
            case "message":
                if self.running or not self._next.empty():
                    return ControlReply(ok=False, error="a run is in progress", state="running")
                try:
                    text = validate_prompt(request.text, self._settings)
                except PolicyViolation as exc:
                    return ControlReply(ok=False, error=str(exc))
                self._next.put_nowait(
                    (text, self._options or resolve_options(None, self._settings))
                )
                return ControlReply(ok=True, run=self.run + 1)
