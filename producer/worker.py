"""The worker pool: takes run requests from AGENTCAST_RUNS and runs up to N agents at once.

Request flow: parse (producer/requests.py) -> reject, or claim the session
(producer/claim.py) -> ack the request -> hand the session to a Conversation
(producer/conversation.py), which runs the agent and its follow-ups.

A request for a session whose run is still open elsewhere is put back with a
delay (`nak`) and tried again for at least twice `worker_lost_after_s`; a
session whose last run was left open by a worker that died is closed with
`run.failed` kind `worker_lost` first: by the scan of producer/worker_leases.py
within that bound, or at once when the session has no record and nobody
answers its control subject.

A request is acknowledged only once its run is claimed: a request that a
worker took and died with comes back after `ack_wait` = `worker_lost_after_s`
and goes to a surviving worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Coroutine
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from agentcast.codec import encode
from agentcast.control import RunRejected
from agentcast.events import RunFailedData, RunQueuedData
from agentcast.settings import Settings, inherited
from agentcast.subjects import RUNS_REJECTED, RUNS_STREAM, RUNS_SUBMIT
from producer.acks import AckRouter
from producer.claim import SessionBusy, SessionHead, claim, claude_session_of, read_head
from producer.conversation import Conversation
from producer.publisher import SessionPublisher
from producer.requests import AcceptedRun, RefusedRun, parse_run_request
from producer.transcripts import TranscriptStore
from producer.worker_leases import WorkerLeases

logger = logging.getLogger(__name__)

WORKERS_DURABLE = "agentcast-workers"
_BUSY_REDELIVERIES = 30
_BUSY_DELAY_S = 1.0
_FETCH_WAIT_S = 1.0


class Worker:
    """Runs agents for run requests until `stop()`."""

    def __init__(self, nc: Client, settings: Settings) -> None:
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream()
        self._settings = settings
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._stopping = asyncio.Event()
        self.conversations: dict[str, Conversation] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._env = agent_env(settings)
        self._acks = AckRouter(nc)
        self.leases = WorkerLeases(
            nc, settings, close_lost=self._close_lost, taken_over=self._taken_over
        )
        self.transcripts = TranscriptStore(self._js, settings, self._env)
        self._busy_redeliveries = max(
            _BUSY_REDELIVERIES, math.ceil(2 * settings.worker_lost_after_s / _BUSY_DELAY_S)
        )

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Take requests until stopped, then finish or cancel the runs in flight."""
        await self._acks.start()
        await self.leases.start()
        await self.transcripts.start()
        sub = await self._js.pull_subscribe(
            RUNS_SUBMIT,
            durable=WORKERS_DURABLE,
            stream=RUNS_STREAM,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self._settings.worker_lost_after_s,
                max_ack_pending=-1,
            ),
        )
        await self._check_redelivery(sub)
        logger.info("Worker ready: up to %d agents at once", self._settings.concurrency)
        try:
            while not self._stopping.is_set():
                await self._slots.acquire()
                try:
                    msgs = await sub.fetch(1, timeout=_FETCH_WAIT_S)
                except (TimeoutError, NatsTimeoutError):
                    self._slots.release()
                    continue
                except Exception as exc:  # noqa: BLE001 - NATS reconnecting: wait and try again
                    self._slots.release()
                    logger.debug("fetch failed: %r", exc)
                    await asyncio.sleep(_FETCH_WAIT_S)
                    continue
                self._spawn(self._handle(msgs[0]))
        finally:
            # A fetch's late status reply (408) stays in the subscription's queue, unread,
            # and held drain() at shutdown to its bound; the runs in flight ack by reply subject.
            with contextlib.suppress(NatsError, TimeoutError, ValueError):
                await sub.unsubscribe()
            await self._shutdown()

    async def _check_redelivery(self, sub: JetStreamContext.PullSubscription) -> None:
        """Say so when the durable, made earlier, redelivers after another bound than ours."""
        try:
            ack_wait = (await sub.consumer_info()).config.ack_wait
        except (NatsError, TimeoutError) as exc:
            logger.debug("consumer info failed: %r", exc)
            return
        if ack_wait is not None and abs(ack_wait - self._settings.worker_lost_after_s) > 0.5:
            logger.warning(
                "consumer %s redelivers a dead worker's request after %.0fs, "
                "not worker_lost_after_s %.0fs: it was made with another setting",
                WORKERS_DURABLE,
                ack_wait,
                self._settings.worker_lost_after_s,
            )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _shutdown(self) -> None:
        for conversation in list(self.conversations.values()):
            conversation.end_hold()
        if self._tasks:
            logger.info(
                "Waiting up to %.0fs for %d runs", self._settings.shutdown_grace_s, len(self._tasks)
            )
            _, pending = await asyncio.wait(self._tasks, timeout=self._settings.shutdown_grace_s)
            if pending:
                for conversation in list(self.conversations.values()):
                    conversation.cancel("worker shutdown")
                await asyncio.wait(pending, timeout=self._settings.cancel_grace_s + 15)
        await self.leases.stop()
        await self._acks.stop()
        logger.info("Worker stopped")

    # -- one request ---------------------------------------------------------------

    async def _handle(self, msg: Msg) -> None:
        slot_held = True
        try:
            parsed = parse_run_request(msg.data, self._settings)
            if isinstance(parsed, RunRejected):
                await self._reject(msg, parsed)
                return
            session = parsed.session if isinstance(parsed, RefusedRun) else parsed.request.session
            held = self.conversations.get(session)
            if held is not None:
                await msg.nak(delay=_BUSY_DELAY_S)
                return
            # The record comes first: a worker that dies after its claim leaves
            # a record for the survivors' scan to find.
            if not await self.leases.hold(session):
                await self._busy(msg, session)
                return
            try:
                conversation = await self._claim(msg, session, parsed)
                if conversation is None:
                    return
                if isinstance(parsed, RefusedRun):
                    await conversation.fail_queued(parsed.error, "policy")
                    return
                slot_held = False  # the conversation releases it after the first run
                conversation.transcripts = self.transcripts
                if conversation.run > 1:
                    conversation.claude_session = await claude_session_of(self._js, session)
                await conversation.serve(parsed.request.prompt, parsed.options, slots=self._slots)
            finally:
                await self.leases.release(session)
        except Exception:
            logger.exception("run request failed")
        finally:
            if slot_held:
                self._slots.release()

    async def _claim(
        self, msg: Msg, session: str, parsed: AcceptedRun | RefusedRun
    ) -> Conversation | None:
        head = await read_head(self._js, session)
        if head.active and not await self.leases.answers(session):
            head = await self._close_abandoned(session, head)
        publisher = SessionPublisher(
            self._acks,
            session,
            next_seq=head.next_seq + 1,
            max_msg_size=self._settings.max_msg_size,
            buffer=self._settings.publish_buffer,
            delivery_timeout_s=self._settings.delivery_timeout_s,
        )
        conversation = Conversation(
            self._nc,
            self._settings,
            session,
            publisher,
            first_run=head.next_run,
            env=self._env,
            on_release=self._released,
        )
        self.conversations[session] = conversation
        try:
            if head.active:
                raise SessionBusy(session)
            await conversation.open()
            prompt = parsed.prompt if isinstance(parsed, RefusedRun) else parsed.request.prompt
            options = parsed.options if isinstance(parsed, RefusedRun) else parsed.request.options
            claimed = await claim(
                self._js,
                session,
                head,
                RunQueuedData(prompt=prompt, options=options),
                max_msg_size=self._settings.max_msg_size,
            )
            publisher.start_after(claimed.stream_seq)  # the session's one writer from here on
        except SessionBusy:
            await conversation.abandon()
            await self._busy(msg, session)
            return None
        except BaseException:
            await conversation.abandon()
            raise
        await msg.ack()
        return conversation

    def _released(self, conversation: Conversation) -> None:
        if self.conversations.get(conversation.session) is conversation:
            del self.conversations[conversation.session]

    def _taken_over(self, session: str) -> None:
        conversation = self.conversations.get(session)
        if conversation is not None:
            conversation.end_hold()
            conversation.cancel("another worker took the session over")

    async def _close_lost(self, session: str) -> None:
        """For the leases' scan: close the session's run if its lost worker left one open."""
        head = await read_head(self._js, session)
        if head.active:
            await self._close_abandoned(session, head)

    async def _close_abandoned(self, session: str, head: SessionHead) -> SessionHead:
        """Close a run whose worker died, so the session can run again."""
        logger.warning(
            "session %s: closing run %d left open by a lost worker", session, head.next_run
        )
        try:
            await claim(
                self._js,
                session,
                head._replace(active=False),
                RunFailedData(error="the worker running this session stopped", kind="worker_lost"),
                max_msg_size=self._settings.max_msg_size,
            )
        except SessionBusy:
            pass
        return await read_head(self._js, session)

    async def _busy(self, msg: Msg, session: str) -> None:
        if msg.metadata.num_delivered < self._busy_redeliveries:
            await msg.nak(delay=_BUSY_DELAY_S)
            return
        await self._reject(
            msg,
            RunRejected(
                code="session_busy", reason="the session has a run in progress", session=session
            ),
        )

    async def _reject(self, msg: Msg, rejection: RunRejected) -> None:
        logger.warning("run request rejected: %s", rejection.reason)
        await self._nc.publish(RUNS_REJECTED, encode(rejection))
        await msg.ack()


def agent_env(settings: Settings) -> dict[str, str]:
    """Environment for the agents' CLI, on top of the worker's own."""
    env = {
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    if settings.claude_config_dir:
        env["CLAUDE_CONFIG_DIR"] = settings.claude_config_dir
    # The SDK merges this over os.environ, where a real ANTHROPIC_API_KEY lives.
    if settings.anthropic_base_url:
        env["ANTHROPIC_BASE_URL"] = settings.anthropic_base_url
        if inherited("ANTHROPIC_API_KEY") is None:
            env["ANTHROPIC_API_KEY"] = "agentcast-scripted-model"
    return env
