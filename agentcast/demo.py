"""The demo driver: keeps a handful of scripted agents running, so the dashboard is alive.

It submits run requests like any client would (JSON on agentcast.runs.submit),
cycling through the scripted model's scenarios, and sends a follow-up to some
finished sessions so multi-run conversations show up too.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random

from nats.aio.client import Client
from nats.aio.msg import Msg

from agentcast.codec import json_decoder
from agentcast.sessions import new_session_id
from agentcast.subjects import RUNS_SUBMIT

logger = logging.getLogger(__name__)

# (prompt, weight): most demo runs do real work; a few fail or stream slowly.
DEMO_PROMPTS = (
    "[scenario:coding] Build a small word counter and fix its bug",
    "[scenario:coding] Write a word counter script, test it, fix what is wrong",
    "[scenario:bash] Say hello from the shell",
    "[scenario:slow] Explain, at length, how streaming agents works",
    "[scenario:subagent] Delegate a shell check to a sub-agent",
    "[scenario:big_output] Generate a large build log and summarise it",
    "[scenario:api_error] Try a request that the API refuses",
)
FOLLOW_UP = "[scenario:followup] Thanks! What did I ask you first?"


class DemoDriver:
    """Keeps `agents` sessions busy until stopped."""

    def __init__(self, nc: Client, *, agents: int = 4, pause_s: float = 3.0) -> None:
        self._nc = nc
        self._agents = agents
        self._pause_s = pause_s
        self._active: set[str] = set()
        self._followed_up: set[str] = set()
        self._done = asyncio.Queue[str]()
        self._prompts = itertools.cycle(DEMO_PROMPTS)
        self._rng = random.Random()

    async def run(self) -> None:
        sub = await self._nc.subscribe("agentcast.evt.*.run.>", cb=self._on_run_event)
        try:
            for _ in range(self._agents):
                await self._submit(new_session_id(), next(self._prompts))
                await asyncio.sleep(0.3)
            while True:
                finished = await self._done.get()
                await asyncio.sleep(self._pause_s * self._rng.uniform(0.5, 1.5))
                if finished not in self._followed_up and self._rng.random() < 0.3:
                    self._followed_up.add(finished)
                    await self._submit(finished, FOLLOW_UP)
                else:
                    await self._submit(new_session_id(), next(self._prompts))
        finally:
            await sub.unsubscribe()

    async def _submit(self, session: str, prompt: str) -> None:
        self._active.add(session)
        body = {"session": session, "prompt": prompt, "options": {}}
        await self._nc.jetstream().publish(RUNS_SUBMIT, json.dumps(body).encode())

    async def _on_run_event(self, msg: Msg) -> None:
        session = msg.subject.split(".")[2]
        if session not in self._active:
            return
        kind = json_decoder.decode(msg.data).get("type", "")
        if kind in ("run.completed", "run.failed", "run.cancelled"):
            self._active.discard(session)
            self._done.put_nowait(session)
