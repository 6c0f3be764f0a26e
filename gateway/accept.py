"""The gateway's accept loop: up to ACCEPTS_PER_TURN new connections per turn of the loop.

uvloop's own server (libuv since 1.45, libuv/libuv#3696) accepts one
connection per listening handle per turn. In a reconnect storm a turn takes a
few milliseconds, so a health probe or an API call waited behind hundreds of
connections in the kernel's accept queue: 0.3-0.8 s at 5,000 clients
(bench/README.md, storm). Here one reader on the listening socket accepts
until the queue is empty or the turn's share is taken, so the storm waits
inside, in the replay admission line (gateway/admission.py), and a probe is
answered within a turn or two. The share is bounded so one turn never
becomes a long one, and with `--workers N` each process still takes part.

Each accepted socket goes to `loop.connect_accepted_socket`, so a connection
is the same transport and protocol as one uvloop would have accepted.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from typing import Final

logger = logging.getLogger(__name__)

ACCEPTS_PER_TURN: Final = 16
FD_PAUSE_S: Final = 0.1
"""How long accepting pauses when the process is out of file descriptors (or memory)."""

_OUT_OF_FDS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class Acceptor:
    """Accepts on `sock` into `protocol_factory` until `close()`; an `agentcast._internals.
    Listener`, what uvicorn's shutdown expects of a server (`close`, `wait_closed`)."""

    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
        *,
        backlog: int,
        on_out_of_fds: Callable[[], None] = lambda: None,
        on_close: Callable[[], None] = lambda: None,
    ) -> None:
        self._sock = sock
        self._factory = protocol_factory
        self._on_out_of_fds = on_out_of_fds
        self._on_close = on_close
        self._loop = asyncio.get_running_loop()
        self._opening: set[asyncio.Task[object]] = set()
        self._paused: asyncio.TimerHandle | None = None
        self._starved = False
        """Paused at least once since the last connection accepted: logged once per spell."""
        self._closed = False
        sock.setblocking(False)
        sock.listen(backlog)
        self._loop.add_reader(sock.fileno(), self._accept)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return host, port

    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_TURN):
            try:
                conn, _addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_FDS:
                    self._pause(exc)
                    return
                continue  # the client gave up in the queue (ECONNABORTED, EPROTO): the next one
            if self._starved:
                self._starved = False
                logger.warning("Accepting again: file descriptors are free")
            conn.setblocking(False)
            task = self._loop.create_task(self._loop.connect_accepted_socket(self._factory, conn))
            self._opening.add(task)
            task.add_done_callback(self._opened)

    def _opened(self, task: asyncio.Task[object]) -> None:
        self._opening.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.debug("an accepted connection could not be opened: %r", exc)  # its client left

    def _pause(self, exc: OSError) -> None:
        # Level-triggered: a full fd table would wake this reader every turn. The
        # connections stay queued in the kernel until descriptors are free again.
        if not self._starved:
            self._starved = True
            logger.warning("Accepting paused, retried every %.1f s: %s", FD_PAUSE_S, exc.strerror)
        self._on_out_of_fds()
        self._loop.remove_reader(self._sock.fileno())
        self._paused = self._loop.call_later(FD_PAUSE_S, self._resume)

    def _resume(self) -> None:
        self._paused = None
        if not self._closed:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    def close(self) -> None:
        """Stop accepting, then `on_close()`; the connections already open stay (uvicorn's
        shutdown ends them)."""
        if self._closed:
            return
        self._closed = True
        if self._paused is not None:
            self._paused.cancel()
        else:
            self._loop.remove_reader(self._sock.fileno())
        self._on_close()

    async def wait_closed(self) -> None:
        """Connections accepted before `close()` finish opening (then uvicorn tracks them)."""
        if self._opening:
            await asyncio.wait(set(self._opening))
