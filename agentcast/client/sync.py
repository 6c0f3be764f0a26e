"""Blocking wrappers of Client, for scripts and notebooks.

The async client runs on an event loop of its own in a daemon thread, so the
wrappers work where a loop is already running in the caller's thread (Jupyter).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

from agentcast.client.client import CancelReply, Client, QueuedRun
from agentcast.client.stream import StreamStats
from agentcast.events import AnyEvent, Event
from agentcast.progress import ProgressSnapshot

T = TypeVar("T")


class SyncClient:
    """The same API as Client, blocking; iterators yield as events arrive."""

    def __init__(self, gateway_url: str, token: str, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="agentcast-client", daemon=True
        )
        self._thread.start()
        self._client: Client = self._call(_make(gateway_url, token, kwargs))

    @property
    def stats(self) -> StreamStats:
        return self._client.stats

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._call(self._client.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def events(
        self, session: str, *, from_: str = "start", types: Sequence[str] | None = None
    ) -> Iterator[Event | AnyEvent]:
        return self._iterate(self._client.events(session, from_=from_, types=types))

    def firehose(
        self, sessions: str = "*", *, from_: str = "now", types: Sequence[str] | None = None
    ) -> Iterator[Event | AnyEvent]:
        return self._iterate(self._client.firehose(sessions, from_=from_, types=types))

    def sessions(self, *, state: str | None = None, limit: int = 100) -> list[ProgressSnapshot]:
        return self._call(self._client.sessions(state=state, limit=limit))

    def snapshot(self, session: str) -> ProgressSnapshot:
        return self._call(self._client.snapshot(session))

    def run(
        self, prompt: str, session: str | None = None, options: dict[str, Any] | None = None
    ) -> QueuedRun:
        return self._call(self._client.run(prompt, session, options))

    def cancel(self, session: str) -> CancelReply:
        return self._call(self._client.cancel(session))

    def message(self, session: str, text: str) -> QueuedRun:
        return self._call(self._client.message(session, text))

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _iterate(self, agen: Any) -> Iterator[Event | AnyEvent]:
        try:
            while True:
                try:
                    yield self._call(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            # Closing the generator closes its HTTP stream, on the loop that owns it.
            self._call(agen.aclose())


async def _make(gateway_url: str, token: str, kwargs: dict[str, Any]) -> Client:
    # Built on the client's own loop: httpx binds its connection pool to the loop it runs on.
    return Client(gateway_url, token, **kwargs)
