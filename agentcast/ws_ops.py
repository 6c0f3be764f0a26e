"""The WebSocket client frames (SPEC: `/v1/ws`), as a msgspec tagged union on `op`.

Unknown fields are ignored (old servers read new clients' frames); `id`, when
given, is echoed in the reply. Fields the gateway checks itself with its own
error codes (`prompt`, `options`, `text`) are left loose here.
"""

from __future__ import annotations

from typing import Any

import msgspec

Ref = str | int | None


class _Op(msgspec.Struct, frozen=True, kw_only=True, tag_field="op"):
    id: Ref = None


class Ping(_Op, tag="ping", frozen=True, kw_only=True):
    pass


class Subscribe(_Op, tag="subscribe", frozen=True, kw_only=True):
    session: str
    start: str | int = msgspec.field(name="from", default="start")
    types: list[str] | None = None


class Unsubscribe(_Op, tag="unsubscribe", frozen=True, kw_only=True):
    session: str


class Run(_Op, tag="run", frozen=True, kw_only=True):
    prompt: Any = None
    session: str | None = None
    options: Any = None


class Cancel(_Op, tag="cancel", frozen=True, kw_only=True):
    session: str


class Message(_Op, tag="message", frozen=True, kw_only=True):
    session: str
    text: Any = None


ClientOp = Ping | Subscribe | Unsubscribe | Run | Cancel | Message


class OpRef(msgspec.Struct, frozen=True):
    """Just the `id` of a frame that is otherwise invalid (so its error reply carries it)."""

    id: Ref = None
