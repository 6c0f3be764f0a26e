"""The Anthropic Messages streaming events for one scripted turn (pure).

Order and shapes follow the API's streaming documentation:

    message_start, then per content block
    content_block_start, [ping after the first], content_block_delta..., content_block_stop,
    then message_delta (stop_reason, usage) and message_stop.

Text and thinking are cut at word boundaries, tool input JSON into small
fragments (the first one empty, as the API does), so deltas concatenate back
to exactly the scripted text and input.
"""

from __future__ import annotations

import json
import random
import re
import string
from dataclasses import dataclass
from typing import Any

from agentcast.codec import encoder

from .scenario import Block, TextBlock, ThinkingBlock, ToolUseBlock, Turn

__all__ = ["SseEvent", "Usage", "encode_sse", "estimate_tokens", "message_body", "turn_events"]

_WORD_RE = re.compile(r"\S+\s*|\s+")
_ID_ALPHABET = string.ascii_letters + string.digits
_encoder = encoder


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str
    data: dict[str, Any]
    # Output tokens this event carries; pacing waits in proportion.
    tokens: int = 0


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    def as_dict(self, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }


def _new_id(prefix: str, rng: random.Random) -> str:
    return prefix + "".join(rng.choices(_ID_ALPHABET, k=24))


def estimate_tokens(chars: int) -> int:
    """About four characters a token, at least one: good enough for a plausible cost."""
    return max(1, round(chars / 4))


def encode_sse(event: SseEvent) -> bytes:
    return b"event: " + event.event.encode() + b"\ndata: " + _encoder.encode(event.data) + b"\n\n"


def _word_chunks(text: str, words_per_delta: int) -> list[str]:
    words = _WORD_RE.findall(text)
    return ["".join(words[i : i + words_per_delta]) for i in range(0, len(words), words_per_delta)]


def _json_chunks(raw: str, rng: random.Random) -> list[str]:
    chunks = [""]
    pos = 0
    while pos < len(raw):
        size = rng.randint(6, 24)
        chunks.append(raw[pos : pos + size])
        pos += size
    return chunks


def _delta(index: int, delta: dict[str, Any], text: str) -> SseEvent:
    data = {"type": "content_block_delta", "index": index, "delta": delta}
    return SseEvent("content_block_delta", data, tokens=estimate_tokens(len(text)) if text else 0)


def _block_events(index: int, block: Block, turn: Turn, rng: random.Random) -> list[SseEvent]:
    match block:
        case TextBlock(text=text):
            start: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [
                _delta(index, {"type": "text_delta", "text": c}, c)
                for c in _word_chunks(text, turn.words_per_delta)
            ]
        case ThinkingBlock(thinking=thinking):
            start = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [
                _delta(index, {"type": "thinking_delta", "thinking": c}, c)
                for c in _word_chunks(thinking, turn.words_per_delta)
            ]
            # The real signature is opaque and only the API checks it.
            signature = "".join(rng.choices(_ID_ALPHABET, k=96))
            deltas.append(_delta(index, {"type": "signature_delta", "signature": signature}, ""))
        case ToolUseBlock(name=name, input=tool_input):
            start = {"type": "tool_use", "id": _new_id("toolu_01", rng), "name": name, "input": {}}
            raw = json.dumps(tool_input, ensure_ascii=False)
            deltas = [
                _delta(index, {"type": "input_json_delta", "partial_json": c}, c)
                for c in _json_chunks(raw, rng)
            ]
        case _:
            raise TypeError(f"unknown block {block!r}")
    opened = SseEvent(
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": start},
    )
    closed = SseEvent("content_block_stop", {"type": "content_block_stop", "index": index})
    return [opened, *deltas, closed]


def turn_events(turn: Turn, *, model: str, usage: Usage, rng: random.Random) -> list[SseEvent]:
    """Every streaming event of one assistant message; `rng` makes ids reproducible."""
    if turn.error is not None:
        raise ValueError("an error turn has no stream")
    message: dict[str, Any] = {
        "id": _new_id("msg_01", rng),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage.as_dict(output_tokens=1),
    }
    events = [SseEvent("message_start", {"type": "message_start", "message": message})]
    for index, block in enumerate(turn.blocks):
        block_events = _block_events(index, block, turn, rng)
        events.append(block_events[0])
        if index == 0:
            events.append(SseEvent("ping", {"type": "ping"}))
        events.extend(block_events[1:])
    output_tokens = max(1, sum(e.tokens for e in events))
    events.append(
        SseEvent(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": turn.effective_stop_reason, "stop_sequence": None},
                "usage": usage.as_dict(output_tokens=output_tokens),
            },
        )
    )
    events.append(SseEvent("message_stop", {"type": "message_stop"}))
    return events


def message_body(turn: Turn, *, model: str, usage: Usage, rng: random.Random) -> dict[str, Any]:
    """The same turn as one non-streaming Message object."""
    message: dict[str, Any] = {}
    content: list[dict[str, Any]] = []
    for event in turn_events(turn, model=model, usage=usage, rng=rng):
        data = event.data
        if data["type"] == "message_start":
            message = dict(data["message"])
        elif data["type"] == "content_block_start":
            content.append(dict(data["content_block"]))
        elif data["type"] == "content_block_delta":
            block, delta = content[data["index"]], data["delta"]
            match delta["type"]:
                case "text_delta":
                    block["text"] += delta["text"]
                case "thinking_delta":
                    block["thinking"] += delta["thinking"]
                case "signature_delta":
                    block["signature"] = delta["signature"]
                case "input_json_delta":
                    block["_json"] = block.get("_json", "") + delta["partial_json"]
        elif data["type"] == "message_delta":
            message.update(data["delta"])
            message["usage"] = data["usage"]
    for block in content:
        if "_json" in block:
            block["input"] = json.loads(block.pop("_json"))
    message["content"] = content
    return message
