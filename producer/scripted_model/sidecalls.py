"""Answers to the requests Claude Code makes besides the agent loop itself (pure)."""

from __future__ import annotations

import re
from typing import Any

from .conversation import Conversation
from .scenario import TextBlock, Turn

__all__ = ["is_side_call", "side_turn"]

_MARKER_RE = re.compile(r"\[scenario:[A-Za-z0-9_-]+\]")


def is_side_call(body: dict[str, Any], conv: Conversation) -> bool:
    """A request without tools is not the agent loop (titles, summaries), unless it names a scenario."""
    return not body.get("tools") and not _MARKER_RE.search(conv.prompt)


def side_turn(conv: Conversation) -> Turn:
    """A short, plausible answer: the first words of the prompt, like a title."""
    words = _MARKER_RE.sub("", conv.prompt).split()
    title = " ".join(words[:6]).strip(" .,:;") or "Scripted conversation"
    return Turn(blocks=[TextBlock(text=title)])
