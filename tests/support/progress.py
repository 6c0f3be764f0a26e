"""The pure reducer's view of a list of events, to compare services and tests against."""

from __future__ import annotations

from agentcast.events import Event
from agentcast.progress import ProgressSnapshot
from consumers.progress.reducer import apply, new_state, snapshot


def snapshots_after_each(events: list[Event]) -> list[ProgressSnapshot]:
    """The snapshot after each event, applied in order from a new state."""
    state = new_state(events[0].session)
    out = []
    for event in events:
        state = apply(state, event)
        out.append(snapshot(state))
    return out
