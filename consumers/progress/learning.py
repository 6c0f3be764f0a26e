"""The metrics process's learned history: applied with every event, stored beside the states.

The service keeps one `Learning`. Every event goes through `apply`, which
runs the pure reducer with the history (so a new run's prior comes from it)
and folds each completed run in. The history is stored in the states bucket
under `key` (a name no session id can take) before the states of the same
commit, and loaded with them: history.py's stream positions make a replay
after a restart learn nothing twice and see what it saw the first time.
"""

from __future__ import annotations

from typing import Final

from agentcast.events import AnyEvent, Event
from consumers.progress import history as hist
from consumers.progress.history import History
from consumers.progress.reducer import SessionState, apply, completed

_PREFIX: Final = "history."


class Learning:
    def __init__(self, consumer: str) -> None:
        # Per durable consumer: the session ids' alphabet has no ".", so no session collides.
        self.key = _PREFIX + consumer
        self.history: History = hist.EMPTY
        self.unstored = False

    def load(self, key: str, value: bytes) -> bool:
        """Take the stored history if this is its entry (True), else leave it to the caller."""
        if not key.startswith(_PREFIX):
            return False
        if key == self.key:
            self.history = hist.decode_history(value)
            self.unstored = (
                True  # stored again at the next commit: a bucket's max age never drops it
            )
        return True

    def apply(self, state: SessionState, event: Event | AnyEvent, position: int) -> SessionState:
        """The reducer's step with the history; a completed run is learned."""
        after = apply(state, event, self.history, position)
        if (done := completed(state, after)) is not None:
            learned = hist.learn(
                self.history, position, done.kind, done.duration_ms, done.work, done.items.items()
            )
            self.unstored = self.unstored or learned is not self.history
            self.history = learned
        return after

    def entry(self) -> tuple[str, bytes] | None:
        """The history to store at this commit, if it changed since it was last stored."""
        return (self.key, hist.encode_history(self.history)) if self.unstored else None

    def stored(self) -> None:
        self.unstored = False
