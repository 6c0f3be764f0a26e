"""JetStream reads for replay, in bounded batches: batched direct gets over one inbox.

A replay asks for "the next `batch` messages matching a subject filter from
sequence N, at most `max_bytes`" (JetStream direct get with `next_by_subj`
and `batch`, nats-server >= 2.11). The answer carries how many matching
messages are left, so a reader knows exactly when it has reached the end of
the stream. No consumer is created per client: a reconnect storm costs the
server reads, not consumer state.

On a replicated stream any replica answers a direct get, and a follower may
not yet hold what the leader stored (and republished live) a moment ago: a
replay ending at such a follower's end would skip events. So every read
carries `min_last_seq` (nats-server >= 2.12: a replica that is behind hands
the read to the leader) set to a floor that only rises: the highest stream
sequence this process has seen live, and, before a replay starts, the
stream's last sequence as its leader reports it (`sync()`, one request shared
by every replay that starts meanwhile, so a reconnect storm costs one).

Replays share their batch reads (`batch(..., since=)`, gateway/readcache.py):
a storm of replays of one session reads each batch once, not once per client.
Lookups on behalf of an API call (`get`, `last`) wait `lookup_timeout` at most,
so that a stalled NATS gets a 503 well within the API's 2 s, not a hang.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any, Final

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from agentcast.codec import encode
from agentcast.cursor import format_cursor
from agentcast.errors import InvalidCursor, NatsUnavailable
from agentcast.subjects import EVENT_PREFIX, EVENTS_STREAM
from gateway.errors import ApiError
from gateway.frames import Frame
from gateway.readcache import Batch, SharedBatches
from gateway.telemetry import Stats

logger = logging.getLogger(__name__)

_EVT_PREFIX_LEN: Final = len(EVENT_PREFIX) + 1


class ReplayError(NatsUnavailable):
    """A replay read that JetStream did not answer (or refused with a status)."""


class DirectReader:
    """Direct gets on one stream, multiplexed over one wildcard inbox subscription."""

    def __init__(
        self,
        nc: Client,
        stream: str = EVENTS_STREAM,
        *,
        prefix: str = EVENT_PREFIX,
        timeout: float = 5.0,
        lookup_timeout: float = 1.5,
        stats: Stats | None = None,
    ) -> None:
        self._nc = nc
        self._stream = stream
        self._key_prefix = prefix
        """Subjects are `<prefix>.<key>.<type>`: the key is a session (or an app stream)."""
        self._key_at = len(prefix) + 1
        self._api = f"$JS.API.DIRECT.GET.{stream}"
        self._timeout = timeout
        self._lookup_timeout = lookup_timeout
        self.shared = SharedBatches(stats or Stats())
        self._prefix = nc.new_inbox()
        self._ids = itertools.count()
        self._waiting: dict[str, asyncio.Queue[Msg]] = {}
        self._sub: Subscription | None = None
        self.replicated = False
        """Set when the stream has followers that may lag (replicas > 1)."""
        self.floor = 0
        """Every answer must reflect the stream at least up to this sequence."""
        self._next_sync: asyncio.Future[int] | None = None

    async def start(self) -> None:
        info = await self._nc.jetstream().stream_info(self._stream)
        self.replicated = (info.config.num_replicas or 1) > 1
        self.floor = info.state.last_seq
        self._sub = await self._nc.subscribe(self._prefix + ".*", cb=self._on_msg)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def _on_msg(self, msg: Msg) -> None:
        queue = self._waiting.get(msg.subject)
        if queue is not None:
            queue.put_nowait(msg)

    async def _request(
        self, body: dict[str, Any], *, batched: bool, timeout: float
    ) -> tuple[list[Msg], int]:
        if self._sub is None:
            raise RuntimeError("DirectReader.start() was not awaited")
        if self.replicated and self.floor:
            body["min_last_seq"] = self.floor
        inbox = f"{self._prefix}.{next(self._ids)}"
        queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._waiting[inbox] = queue
        msgs: list[Msg] = []
        try:
            await self._nc.publish(self._api, encode(body), reply=inbox)
            while True:
                try:
                    msg = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError as exc:
                    raise ReplayError(f"no answer from JetStream to {body}") from exc
                headers = msg.headers or {}
                status = headers.get("Status")
                if status == "404":
                    return msgs, 0
                if status == "204":  # end of batch
                    return msgs, int(headers.get("Nats-Num-Pending", 0))
                if status is not None:
                    raise ReplayError(f"JetStream direct get failed: {status} {headers}")
                msgs.append(msg)
                if not batched:
                    return msgs, int(headers.get("Nats-Num-Pending", 0))
        finally:
            del self._waiting[inbox]

    def frame(self, msg: Msg) -> Frame:
        """The Frame of a message read from this stream (no JSON decode)."""
        return frame_of(msg, self._key_at)

    def observe(self, seq: int) -> None:
        """A live message proved that the stream holds `seq`."""
        self.floor = max(self.floor, seq)

    async def sync(self) -> int:
        """Raise the floor to the stream's last sequence as known now; returns it.

        Callers that arrive while a request is already on its way wait for the
        next one: only an answer to a request sent after the call can cover
        what was stored before it.
        """
        if not self.replicated:
            return self.floor
        waiter = self._next_sync
        if waiter is None:
            waiter = self._next_sync = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(self._send_sync, waiter)
        return await asyncio.shield(waiter)

    def _send_sync(self, waiter: asyncio.Future[int]) -> None:
        self._next_sync = None  # later callers need a request sent after them
        task = asyncio.ensure_future(self._stream_last_seq())

        def settle(done: asyncio.Future[int]) -> None:
            if done.cancelled():
                waiter.cancel()
            elif (exc := done.exception()) is not None:
                waiter.set_exception(ReplayError(f"stream info failed: {exc!r}"))
                waiter.exception()  # retrieved here: every waiter re-raises it
            else:
                self.observe(done.result())
                waiter.set_result(self.floor)

        task.add_done_callback(settle)

    async def _stream_last_seq(self) -> int:
        # Stream info is answered by the stream's leader, never by a follower.
        info = await self._nc.jetstream(timeout=self._timeout).stream_info(self._stream)
        return info.state.last_seq

    def mark(self) -> int:
        """A tick for a replay (or refill) now attached to its live topic: pass it as `since`."""
        return self.shared.mark()

    async def batch(
        self, start_seq: int, subject: str, max_msgs: int, max_bytes: int, *, since: int = -1,
        live_mark: int = -1, live_seen: int = 0,
    ) -> Batch:  # fmt: skip
        """Up to `max_msgs` events on `subject` from `start_seq` on, in sequence order.

        With `since` (a `mark()`), the answer may be another replay's read of the same batch,
        as long as it is exact for a replay attached at that tick, or (with the topic's own
        `live_mark` and `live_seen`) for one whose topic heard nothing newer (readcache.py).
        """

        async def read() -> Batch:
            body = {
                "seq": start_seq,
                "next_by_subj": subject,
                "batch": max_msgs,
                "max_bytes": max_bytes,
            }
            msgs, pending = await self._request(body, batched=True, timeout=self._timeout)
            return Batch([self.frame(m) for m in msgs], pending)

        if since < 0:
            return await read()
        key = (subject, start_seq, max_msgs, max_bytes)
        return await self.shared.get(key, since, read, live_mark=live_mark, live_seen=live_seen)

    async def get(self, seq: int) -> Msg | None:
        """The message stored at `seq`, or None if it is gone."""
        msgs, _ = await self._request({"seq": seq}, batched=False, timeout=self._lookup_timeout)
        return msgs[0] if msgs else None

    async def last(self, subject: str) -> Msg | None:
        """The last message on a literal subject, or None."""
        body = {"last_by_subj": subject}
        msgs, _ = await self._request(body, batched=False, timeout=self._lookup_timeout)
        return msgs[0] if msgs else None

    async def check_resume(self, after: int, subject: str, covers: Callable[[str], bool]) -> None:
        """Raise unless replay after stream sequence `after` can be exact.

        The event at `after` must still be stored: if retention (or a purge)
        removed it, later events of the session may be gone too, and the
        client gets `cursor_expired` naming the earliest available cursor.
        A cursor never issued to this stream is `invalid_cursor` (400): beyond
        the end of the stream, or naming a message that is not an event of a
        session the stream covers (`covers(session)`), so that a made-up
        cursor cannot start a replay at an arbitrary place.
        """
        if self.replicated and after > self.floor:
            await self.sync()  # the cursor may come from a gateway that saw more
        stored = await self.get(after)
        if stored is not None:
            session = session_of(stored, self._key_prefix)
            if session is None or not covers(session):
                raise InvalidCursor(format_cursor(after))
            return
        js = self._nc.jetstream(timeout=self._lookup_timeout)
        info = await js.stream_info(self._stream)
        if after > info.state.last_seq:
            raise InvalidCursor(format_cursor(after))
        first = await self.batch(1, subject, 1, 1 << 20)
        earliest = first.frames[0].seq if first.frames else None
        shown = format_cursor(earliest) if earliest is not None else None
        raise ApiError(
            410,
            "cursor_expired",
            f"cursor {format_cursor(after)} is older than the retained events; "
            f"the earliest available cursor is {shown}",
            earliest=shown,
        )


def session_of(msg: Msg, prefix: str = EVENT_PREFIX) -> str | None:
    """The session (the key) of a message read from a stream of `<prefix>.<key>.<type>`
    subjects, None if it is not one of those (not an event)."""
    subject = (msg.headers or {}).get("Nats-Subject", "")
    if not subject.startswith(prefix + "."):
        return None
    session, dot, event_type = subject[len(prefix) + 1 :].partition(".")
    return session if session and dot and event_type else None


def stored_seq(msg: Msg) -> int:
    return int((msg.headers or {})["Nats-Sequence"])


def frame_of(msg: Msg, prefix_len: int = _EVT_PREFIX_LEN) -> Frame:
    """The Frame of a message read from the events stream, or from another stream whose
    subjects' key starts at `prefix_len` (no JSON decode)."""
    headers = msg.headers or {}
    session, _, event_type = headers["Nats-Subject"][prefix_len:].partition(".")
    return Frame(int(headers["Nats-Sequence"]), session, event_type, msg.data)
