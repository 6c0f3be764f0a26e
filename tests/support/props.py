"""Shared pieces of the generated-input tests: bounded hypothesis settings, strategies, samples.

`PROPS` bounds every property test (no deadline: 2 shared cores; no example
database: nothing written into the work tree; the same examples on every run
unless AGENTCAST_PROPS_RANDOM=1). `one_of_each_type` gives an
envelope of every event type, for seeding a stream.
"""

from __future__ import annotations

import os
from typing import Any, Final

import msgspec
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from agentcast.envelope import envelope
from agentcast.events import EVENT_CLASSES, Event, EventData

PROPS: Final = settings(
    max_examples=120,
    deadline=None,
    database=None,
    # CI runs the same examples every time (red only for a change); AGENTCAST_PROPS_RANDOM=1
    # explores new ones, as a developer hunting bugs wants.
    derandomize=not os.environ.get("AGENTCAST_PROPS_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow],
)
QUICK: Final = settings(PROPS, max_examples=40)
"""For tests parametrized over many targets, or that make a request per example."""

# A value for each required `data` field of any event type.
_REQUIRED: Final[dict[str, Any]] = {
    "prompt": "p", "index": 0, "text": "t", "tool_use_id": "toolu_1", "name": "Bash",
    "partial_json": "{", "status": "allowed", "task_id": "task_1", "error": "e", "kind": "k",
    "class": "C",
}  # fmt: skip


def data_class(event_type: str) -> type[EventData]:
    field = next(f for f in msgspec.structs.fields(EVENT_CLASSES[event_type]) if f.name == "data")
    cls: type[EventData] = field.type
    return cls


def sample_data(event_type: str) -> EventData:
    """The smallest valid `data` of `event_type`."""
    cls = data_class(event_type)
    required = {
        f.encode_name: _REQUIRED[f.encode_name] for f in msgspec.structs.fields(cls) if f.required
    }
    return msgspec.convert(required, cls)


def one_of_each_type(session: str) -> list[Event]:
    return [
        envelope(sample_data(t), session=session, run=1, seq=i)
        for i, t in enumerate(sorted(EVENT_CLASSES), start=1)
    ]


json_values: Final = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)
"""Any JSON value (no NaN or infinity: JSON has neither, msgspec writes them as null)."""
