"""Conversations travel with the session: the transcript goes to an object store after each run.

The CLI keeps a conversation in
`CLAUDE_CONFIG_DIR/projects/<sanitised cwd>/<claude session id>.jsonl`, and a
follow-up resumes it (`resume=<id>`) only from that file, on the disk of the
worker that runs the follow-up. So before a run's closing event is published,
its worker puts the file in the JetStream object store `agentcast_transcripts`
under the session's name (the Claude session id in the object's
description); a worker that resumes a session whose file it lacks restores it
there first. Workers share no disk.

The SDK's `session_store` option mirrors transcripts too, but line by line
through appends and a temporary CLAUDE_CONFIG_DIR per resume; one whole-file
put per run suits an object store, and a run cut short by a lost worker is
closed as `worker_lost` anyway, so its follow-up resumes from the last
finished run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import unicodedata
from pathlib import Path

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import ObjectMeta, ObjectStoreConfig, StorageType
from nats.js.errors import APIError, NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from agentcast.settings import Settings

logger = logging.getLogger(__name__)

TRANSCRIPTS_BUCKET = "agentcast_transcripts"
# The CLI's project directory naming (as the SDK's own session helpers copy it).
_SANITIZE = re.compile(r"[^a-zA-Z0-9]")
_MAX_SANITIZED = 200


class TranscriptStore:
    """Saves and restores one worker's transcripts; the bucket is made on `start()`."""

    def __init__(self, js: JetStreamContext, settings: Settings, env: dict[str, str]) -> None:
        self._js = js
        self._settings = settings
        config = env.get("CLAUDE_CONFIG_DIR") or os.environ.get("CLAUDE_CONFIG_DIR")
        home = Path(config) if config else Path.home() / ".claude"
        self._projects = Path(unicodedata.normalize("NFC", str(home))) / "projects"
        self._store: ObjectStore | None = None

    async def start(self) -> None:
        try:
            self._store = await self._js.object_store(TRANSCRIPTS_BUCKET)
            return
        except NotFoundError:  # BucketNotFoundError is one
            logger.debug("object store %s not found, creating it", TRANSCRIPTS_BUCKET)
        config = ObjectStoreConfig(
            bucket=TRANSCRIPTS_BUCKET,
            description="Claude Code transcript per session, for resuming on any worker",
            ttl=self._settings.events_max_age_s,  # no longer than the session's events
            storage=StorageType.FILE,
            replicas=self._settings.replicas,
        )
        try:
            self._store = await self._js.create_object_store(TRANSCRIPTS_BUCKET, config)
        except APIError:  # another worker created it first
            self._store = await self._js.object_store(TRANSCRIPTS_BUCKET)

    def path(self, cwd: Path, claude_session: str) -> Path:
        return self._projects / _sanitize(_canonical(cwd)) / f"{claude_session}.jsonl"

    async def save(self, session: str, claude_session: str | None, cwd: Path) -> None:
        """Put the run's transcript in the store; a failure is logged, never raised."""
        if self._store is None or not claude_session:
            return
        path = self._find(cwd, claude_session)
        if path is None:
            logger.warning("session %s: no transcript %s to save", session, claude_session)
            return
        try:
            data = await asyncio.to_thread(path.read_bytes)
            await self._store.put(session, data, meta=ObjectMeta(description=claude_session))
        except (NatsError, OSError) as exc:  # OSError: reading the file, and timeouts
            logger.warning("session %s: transcript not saved: %r", session, exc)
            return
        logger.debug("session %s: saved transcript %s (%d bytes)", session, path, len(data))

    async def restore(self, session: str, claude_session: str | None, cwd: Path) -> str | None:
        """The Claude session to resume, its transcript on this disk; None starts afresh."""
        if claude_session and self._find(cwd, claude_session) is not None:
            return claude_session  # this worker ran the last run
        if self._store is None:
            return claude_session
        try:
            result = await self._store.get(session)
        except ObjectNotFoundError:
            if claude_session:
                logger.warning(
                    "session %s: transcript %s not on this worker nor in the store; "
                    "the conversation starts afresh",
                    session,
                    claude_session,
                )
            return None
        saved = result.info.description or ""
        if not saved or "/" in saved or saved.startswith("."):
            logger.warning("session %s: stored transcript has no valid id", session)
            return None
        target = self.path(cwd, saved)
        await asyncio.to_thread(_write, target, result.data or b"")
        logger.info("session %s: restored transcript %s from the store", session, saved)
        return saved

    def _find(self, cwd: Path, claude_session: str) -> Path | None:
        path = self.path(cwd, claude_session)
        if path.is_file():
            return path
        # A long or unusual cwd may be named differently by this CLI version.
        return next(self._projects.glob(f"*/{claude_session}.jsonl"), None)


def _canonical(cwd: Path) -> str:
    return unicodedata.normalize("NFC", os.path.realpath(cwd))


def _sanitize(name: str) -> str:
    sanitized = _SANITIZE.sub("-", name)
    if len(sanitized) <= _MAX_SANITIZED:
        return sanitized
    return f"{sanitized[:_MAX_SANITIZED]}-{_js_hash36(name)}"


def _js_hash36(text: str) -> str:
    """The CLI's 32-bit string hash (JavaScript `h = (h << 5) - h + c | 0`) in base 36."""
    h = 0
    for ch in text:
        h = ((h << 5) - h + ord(ch)) & 0xFFFFFFFF
    if h >= 0x80000000:
        h -= 0x100000000
    h = abs(h)
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while h:
        h, rest = divmod(h, 36)
        out = digits[rest] + out
    return out or "0"


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".restoring")
    partial.write_bytes(data)
    partial.chmod(0o600)  # as private as the CLI keeps its own
    partial.replace(path)
