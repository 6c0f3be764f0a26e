"""Events of a real recorded run: producer/traces/<name>.jsonl through the producer's normalizer.

Test-only: the consumers never import the producer, but their tests may use
it to turn raw CLI stream-json into the envelopes a worker would publish.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from claude_agent_sdk._internal.message_parser import parse_message

from agentcast.events import Event, RunQueuedData, make_event
from producer.normalize import Normalizer

TRANSCRIPTS = Path(__file__).resolve().parent.parent.parent / "producer" / "traces"


def transcript_events(name: str, session: str, *, run: int = 1, first_seq: int = 1) -> list[Event]:
    """`run.queued`, then every event the normalizer maps the transcript to, with seqs and times."""
    normalizer = Normalizer()
    drafts = []
    for line in (TRANSCRIPTS / f"{name}.jsonl").read_text().splitlines():
        message = parse_message(json.loads(line))
        if message is not None:
            drafts.extend(normalizer.feed(message))
    start = time.time_ns()
    events = [
        make_event(
            RunQueuedData(prompt=f"[scenario:{name}]"),
            id=f"{session}-{first_seq}",
            session=session,
            run=run,
            seq=first_seq,
            ts=start,
        )
    ]
    for i, draft in enumerate(drafts, 1):
        seq = first_seq + i
        events.append(
            make_event(
                draft.data,
                id=f"{session}-{seq}",
                session=session,
                run=run,
                seq=seq,
                ts=start + i * 1_000_000,
                parent_tool_use_id=draft.parent_tool_use_id,
            )
        )
    return events
