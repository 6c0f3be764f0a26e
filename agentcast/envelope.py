"""The one envelope builder: event data in its envelope, with the id every writer uses.

The id is `<session>.<seq>`: unique, and the same on every re-send of the
event, which is what lets JetStream's duplicate window (`Nats-Msg-Id`) drop
re-sends. The producer (producer/stamp.py), the tests (tests/support/events.py)
and the benchmarks (bench/_consumer_load.py) all build envelopes here.
"""

from __future__ import annotations

import time

from agentcast.events import Event, EventData, make_event


def event_id(session: str, seq: int) -> str:
    return f"{session}.{seq}"


def envelope(
    data: EventData,
    *,
    session: str,
    run: int,
    seq: int,
    ts: int | None = None,
    parent_tool_use_id: str | None = None,
) -> Event:
    """`data` as event `seq` of `session`'s run `run`, stamped now unless `ts` is given."""
    return make_event(
        data,
        id=event_id(session, seq),
        session=session,
        run=run,
        seq=seq,
        ts=time.time_ns() if ts is None else ts,
        parent_tool_use_id=parent_tool_use_id,
    )
