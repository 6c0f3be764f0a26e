"""How a stream is written, from its request: the format (query `format`, or `Accept`) and the
coalescing window (`coalesce_ms`); it makes the client's FormatStream, or none for the
default format's shared frames."""

from __future__ import annotations

from typing import Final

from gateway.formats.agui import AguiTranslator
from gateway.formats.aisdk import AiSdkTranslator
from gateway.formats.native import NativeTranslator
from gateway.formats.stream import FormatStream
from gateway.params import Format, parse_coalesce, parse_format

AI_SDK_HEADERS: Final = [(b"x-vercel-ai-ui-message-stream", b"v1")]


class Style:
    """How a stream is written: its format and coalescing window (query `format`, `Accept`,
    `coalesce_ms`)."""

    __slots__ = ("coalesce_ms", "format")

    def __init__(self, fmt: str | None, accept: str | None, coalesce_ms: int | None) -> None:
        self.format: Format = parse_format(fmt, accept)
        self.coalesce_ms = parse_coalesce(coalesce_ms)

    @property
    def native(self) -> bool:
        """agentcast frames, shared by every client (the fast path)."""
        return self.format == "agentcast" and self.coalesce_ms == 0

    def stream(
        self, quiet_until: int, run: int | None = None, *, shareable: bool = True
    ) -> FormatStream | None:
        if self.native:
            return None
        translator = (
            AguiTranslator(tracking=quiet_until > 0) if self.format == "ag-ui"
            else AiSdkTranslator(run) if self.format == "ai-sdk"
            else NativeTranslator()
        )  # fmt: skip
        return FormatStream(
            translator, quiet_until=quiet_until, coalesce_ms=self.coalesce_ms, shareable=shareable
        )

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return AI_SDK_HEADERS if self.format == "ai-sdk" else []
