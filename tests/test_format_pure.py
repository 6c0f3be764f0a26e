"""The format translators, pure, over every recorded transcript (producer/traces): whole
streams and joins at many cursors, checked by the ecosystems' validators without a server."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from agentcast.codec import encode
from agentcast.envelope import envelope
from agentcast.events import (
    EventData,
    MessageCompletedData,
    MessageStartedData,
    RateLimitData,
    RunCancelledData,
    RunCompletedData,
    RunFailedData,
    RunQueuedData,
    RunStartedData,
    SdkOtherData,
    TaskCompletedData,
    TaskStartedData,
    TextCompletedData,
    TextDeltaData,
    ThinkingCompletedData,
    ThinkingDeltaData,
    ToolCalledData,
    ToolInputDeltaData,
    ToolResultData,
    ToolStartedData,
    type_of,
)
from gateway.errors import ApiError
from gateway.formats import AguiTranslator, AiSdkTranslator, FormatStream
from gateway.frames import Frame
from gateway.params import MAX_COALESCE_MS, parse_coalesce, parse_format
from producer.synthetic import load_trace, trace_files
from tests.support.formats import agui_python_check, messages, node_check

TRACES = {p.stem: p for p in trace_files()}


def session_frames(*stems: str, session: str = "s") -> list[Frame]:
    """The transcripts as runs 1, 2... of one session, stored in order."""
    frames: list[Frame] = []
    for run, stem in enumerate(stems, 1):
        for draft in load_trace(TRACES[stem]):
            frames.append(_frame(draft.data, session, run, len(frames) + 1,
                                 draft.parent_tool_use_id))  # fmt: skip
    return frames


def _frame(data: EventData, session: str, run: int, seq: int, parent: str | None) -> Frame:
    event = envelope(data, session=session, run=run, seq=seq, parent_tool_use_id=parent)
    return Frame(seq, session, type_of(event), encode(event))


def agui(frames: list[Frame], at: int = 0) -> bytes:
    stream = FormatStream(AguiTranslator(tracking=at > 0), quiet_until=at)
    return b"".join(stream.feed(frames) + stream.caught_up())


def aisdk(frames: list[Frame], at: int = 0) -> bytes:
    stream = FormatStream(AiSdkTranslator(), quiet_until=at)
    return b"".join(stream.feed(frames) + stream.caught_up())


def test_every_transcript_and_join_is_valid_ag_ui_and_exact(tmp_path: Path) -> None:
    bodies, checks = [], []
    for stem in TRACES:
        frames = session_frames(stem, stem)  # two runs: a join may fall in either
        whole = agui(frames)
        bodies.append(whole)
        for at in range(1, len(frames), max(1, len(frames) // 6)):
            joined = agui(frames, at)
            bodies.append(joined)
            checks.append((whole, joined, at))
    for result in node_check("verify-agui.mjs", tmp_path, *bodies):
        assert result["ok"], result
    for body in bodies:
        agui_python_check(body)
    for whole, joined, at in checks:
        after = [m for m in messages(whole) if int(m.id or 0) > at]
        got = messages(joined)
        assert got[len(got) - len(after) :] == after
        assert {m.id for m in got[: len(got) - len(after)]} <= {str(at)}


def test_every_transcript_is_one_valid_ui_message_stream_and_resumes_exactly(
    tmp_path: Path,
) -> None:
    streams: list[bytes | tuple[bytes, ...]] = []
    for stem in TRACES:
        frames = session_frames(stem)
        whole = aisdk(frames)
        streams.append(whole)
        for at in range(1, len(frames), max(1, len(frames) // 5)):
            rest = aisdk(frames, at)
            head = [m for m in messages(whole) if int(m.id or 0) <= at]
            assert messages(whole) == head + messages(rest)
            cut = whole[: whole.index(rest[:40])] if rest else whole
            streams.append((cut, rest))
    for result in node_check("verify-aisdk.mjs", tmp_path, *streams):
        assert result["ok"], result


def test_ai_sdk_cursor_at_the_end_of_a_run_streams_the_next_run() -> None:
    frames = session_frames("quick", "bash")
    end_of_first = next(f.seq for f in frames if f.type == "run.completed")
    rest = messages(aisdk(frames, end_of_first))
    assert rest[0].json == {"type": "start", "messageId": "s:2",
                            "messageMetadata": {"session": "s", "run": 2}}  # fmt: skip
    assert rest[-1].data == "[DONE]" and int(rest[0].id or 0) == end_of_first + 1


def test_ag_ui_drops_what_comes_between_runs() -> None:
    frames = session_frames("quick")
    frames.append(_frame(RateLimitData(status="allowed"), "s", 1, len(frames) + 1, None))
    types = [m.json["type"] for m in messages(agui(frames))]
    assert types[-1] == "RUN_FINISHED" and types.count("CUSTOM") == types[:-1].count("CUSTOM")
    assert int(messages(agui(frames))[-1].id or 0) == len(frames) - 1


@pytest.mark.parametrize("stem", ["api_error"])
def test_a_failed_run_is_run_error(stem: str) -> None:
    last = messages(agui(session_frames(stem)))[-1].json
    assert last["type"] == "RUN_ERROR" and last["code"] == "api_error"


@pytest.mark.parametrize("newest_first", [False, True])
@pytest.mark.parametrize("fmt", ["ag-ui", "ai-sdk"])
def test_live_viewers_of_a_session_share_one_translation(fmt: str, newest_first: bool) -> None:
    session = f"shared_{fmt}_{newest_first}"
    reference = agui if fmt == "ag-ui" else aisdk
    frames = session_frames("subagent", "bash", session=session)
    joins = {0: 0, 10: 0, 30: 0, 50: 45}  # frame index -> quiet_until (0: from the start)
    viewers: list[tuple[FormatStream, list[bytes], int]] = []
    for i, frame in enumerate(frames):
        if i in joins:  # replay what is stored so far, then go live like the others
            at = joins[i]
            translator = AguiTranslator(tracking=at > 0) if fmt == "ag-ui" else AiSdkTranslator()
            stream = FormatStream(translator, quiet_until=at, shareable=True)
            viewer = (stream, stream.feed(frames[:i]), at)
            viewers.insert(0, viewer) if newest_first else viewers.append(viewer)
        for stream, out, _ in viewers:
            out += stream.feed((frame,), live=True)
    for stream, out, at in viewers:
        assert b"".join(out) == reference(frames, at)
    shared = {id(stream.shared) for stream, _, _ in viewers}
    assert len(shared) == 1 and None not in {stream.shared for stream, _, _ in viewers}
    first = viewers[0][0].shared
    assert first is not None and first.translated < len(frames)  # once per event, not per viewer


@pytest.mark.parametrize(
    ("query", "accept", "expected"),
    [
        (None, None, "agentcast"),
        ("ag-ui", None, "ag-ui"),
        ("ai-sdk", "application/vnd.ag-ui.event+json", "ai-sdk"),  # the query wins
        (None, "application/vnd.ag-ui.event+json", "ag-ui"),
        (None, "text/event-stream; format=ai-sdk", "ai-sdk"),
        (None, 'text/html, text/event-stream;format="ag-ui"', "ag-ui"),
        (None, "text/event-stream", "agentcast"),
    ],
)
def test_format_comes_from_the_query_or_accept(
    query: str | None, accept: str | None, expected: str
) -> None:
    assert parse_format(query, accept) == expected


def test_bad_format_or_window_is_a_400() -> None:
    with pytest.raises(ApiError) as bad:
        parse_format("agui", None)
    assert bad.value.status == 400 and bad.value.code == "invalid_format"
    with pytest.raises(ApiError) as wide:
        parse_coalesce(MAX_COALESCE_MS + 1)
    assert wide.value.code == "invalid_coalesce"
    assert parse_coalesce(None) == 0 and parse_coalesce(50) == 50


def test_a_follower_that_falls_out_of_step_is_told_so() -> None:
    """A shared translation keeps only recent events: a follower asking for an older one
    is `diverged` (its stream then ends, and it resumes exactly from its Last-Event-ID)."""
    frames = session_frames("slow", session="diverge")
    ahead = FormatStream(AguiTranslator(tracking=False), shareable=True)
    behind = FormatStream(AguiTranslator(tracking=False), shareable=True)
    for frame in frames[:3]:
        ahead.feed((frame,), live=True)
        behind.feed((frame,), live=True)
    assert ahead.shared is not None and behind.shared is ahead.shared
    for frame in frames[3:400]:
        ahead.feed((frame,), live=True)
    assert behind.feed((frames[3],), live=True) == [] and behind.diverged
    assert not ahead.diverged


def test_rarer_shapes_stay_valid(tmp_path: Path) -> None:
    """A failing sub-agent, a tool error, blocks that were never streamed (in two lanes, no
    message id: their ids must still differ), a nested sub-agent."""

    datas: list[tuple[EventData, str | None]] = [
        (RunQueuedData(prompt="p"), None),
        (ThinkingCompletedData(index=0, text="before any message"), None),
        (MessageStartedData(message_id="m1"), None),
        (ThinkingCompletedData(index=0, text="plan"), None),
        (TextCompletedData(message_id="m1", text="whole block"), None),
        (ToolCalledData(tool_use_id="t1", name="Agent", input={"prompt": "go"}), None),
        (TaskStartedData(task_id="k1", tool_use_id="t1", task_type="general"), None),
        (ToolCalledData(tool_use_id="t2", name="Agent", input={}), "t1"),
        (TaskStartedData(task_id="k2", tool_use_id="t2"), "t1"),
        (TextCompletedData(text="deep"), "t2"),
        (ThinkingCompletedData(index=0, text="a sub-agent's, never streamed"), "t1"),
        (ToolCalledData(tool_use_id="t3", name="Bash", input={"command": "false"}), "t1"),
        (ToolResultData(tool_use_id="t3", is_error=True, content="exit 1"), "t1"),
        (TaskCompletedData(task_id="k1", status="failed", summary="it broke"), None),
        (ToolResultData(tool_use_id="t1", is_error=True, content=[{"type": "text", "text": "x"}]),
         None),
        (MessageCompletedData(message_id="m1", stop_reason="end_turn"), None),
        (RunCompletedData(result="done", stop_reason="end_turn"), None),
    ]  # fmt: skip
    frames = [_frame(d, "rare", 1, i, p) for i, (d, p) in enumerate(datas, 1)]
    bodies = [agui(frames), *(agui(frames, at) for at in range(2, len(frames)))]
    for result in node_check("verify-agui.mjs", tmp_path, *bodies):
        assert result["ok"], result
    found = [m.json for m in messages(bodies[0])]
    kinds = [e["type"] for e in found]
    assert "SUBAGENT_ERROR" in kinds and kinds.count("SUBAGENT_STARTED") == 2
    nested = next(e for e in found if e.get("subagentRunId") == "t2" and "parentSubagentRunId"
                  in e)  # fmt: skip
    assert nested["parentSubagentRunId"] == "t1"
    [result] = node_check("verify-aisdk.mjs", tmp_path, aisdk(frames))
    assert result["ok"], result
    assert "tool-output-error" in result["types"] and "data-subagent" in result["parts"]


def _generated_run(rng: random.Random, messages_: int) -> list[tuple[EventData, str | None]]:
    """A random run in agentcast's grammar: streamed or whole messages of text, thinking and
    tool blocks, in the parent or in (nested) sub-agents that end (or fail) in any order."""
    out: list[tuple[EventData, str | None]] = [(RunQueuedData(prompt="p"), None),
                                               (RunStartedData(model="m"), None)]  # fmt: skip
    subs: list[str] = []
    for m in range(messages_):
        lane = rng.choice([None, *subs])
        mid, streamed = f"m{m}", rng.random() < 0.7
        if streamed:
            out.append((MessageStartedData(message_id=mid), lane))
        for b in range(rng.randint(1, 4)):
            kind = rng.choice(["text", "thinking", "tool"])
            if kind == "text":
                out += [(TextDeltaData(index=b, text=f"w{k} "), lane)
                        for k in range(rng.randint(0, 4) if streamed else 0)]  # fmt: skip
                out.append((TextCompletedData(message_id=mid, text="x"), lane))
            elif kind == "thinking":
                out += [(ThinkingDeltaData(index=b, text=f"t{k}"), lane)
                        for k in range(rng.randint(0, 3) if streamed else 0)]  # fmt: skip
                out.append((ThinkingCompletedData(index=b, text="t"), lane))
            else:
                call, name = f"t{len(out)}", rng.choice(["Bash", "Agent"])
                if streamed:
                    out.append((ToolStartedData(tool_use_id=call, name=name, index=b), lane))
                    out += [(ToolInputDeltaData(tool_use_id=call, partial_json='{"a'), lane)
                            for _ in range(rng.randint(0, 3))]  # fmt: skip
                out.append((ToolCalledData(tool_use_id=call, name=name, input={"a": 1}), lane))
                if name == "Agent" and rng.random() < 0.8:
                    out.append((TaskStartedData(task_id="k" + call, tool_use_id=call), lane))
                    subs.append(call)
                else:
                    out.append((ToolResultData(tool_use_id=call, is_error=rng.random() < 0.3,
                                               content="r"), lane))  # fmt: skip
        if streamed:
            out.append((MessageCompletedData(message_id=mid, stop_reason="tool_use"), lane))
        if subs and rng.random() < 0.4:
            ended = subs.pop(rng.randrange(len(subs)))
            status = rng.choice(["completed", "failed"])
            out.append((TaskCompletedData(task_id="k" + ended, status=status), None))
            out.append((ToolResultData(tool_use_id=ended, content="done"), None))
        if rng.random() < 0.2:
            out.append((RateLimitData(status="allowed"), None))
        if rng.random() < 0.2:
            out.append((SdkOtherData(class_="X", raw={"a": 1}), None))
    end = rng.choice([RunCompletedData(result="ok", stop_reason="end_turn"), RunCancelledData(),
                      RunFailedData(error="e", kind="k"),
                      RunCompletedData(is_error=True, subtype="error_max_turns")])  # fmt: skip
    return [*out, (end, None)]


def test_generated_runs_are_valid_at_every_join(tmp_path: Path) -> None:
    rng = random.Random(13)
    agui_bodies, aisdk_bodies = [], []
    for i in range(25):
        run = _generated_run(rng, rng.randint(1, 6))
        frames = [_frame(d, f"gen{i}", r, n, p) for n, (r, (d, p)) in
                  enumerate(((r, e) for r in (1, 2) for e in run), 1)]  # fmt: skip
        agui_bodies += [agui(frames), *(agui(frames, at) for at in range(1, len(frames), 4))]
        aisdk_bodies.append(aisdk(frames))
    for result in node_check("verify-agui.mjs", tmp_path, *agui_bodies):
        assert result["ok"], result
    for result in node_check("verify-aisdk.mjs", tmp_path, *aisdk_bodies):
        assert result["ok"], result
    for body in agui_bodies:
        agui_python_check(body)
