"""The GenAI histograms and the attribute helpers the recorder shares between spans and metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.metrics import Histogram, Meter
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from consumers.telemetry import genai as g


class Instruments:
    """The five GenAI histograms, with the bucket boundaries the conventions advise."""

    def __init__(self, meter: Meter) -> None:
        def histogram(name: str, unit: str, text: str, buckets: tuple[float, ...]) -> Histogram:
            return meter.create_histogram(
                name, unit=unit, description=text, explicit_bucket_boundaries_advisory=buckets
            )

        self.tokens = histogram(g.TOKEN_USAGE, "{token}", "Tokens per model call", g.TOKEN_BUCKETS)
        self.duration = histogram(
            g.OPERATION_DURATION, "s", "Model call duration", g.OPERATION_BUCKETS
        )
        self.first_chunk = histogram(
            g.TIME_TO_FIRST_CHUNK, "s", "Request to first chunk", g.TIME_TO_FIRST_CHUNK_BUCKETS
        )
        self.agent = histogram(
            g.INVOKE_AGENT_DURATION, "s", "Agent invocation duration", g.INVOKE_AGENT_BUCKETS
        )
        self.tool = histogram(
            g.EXECUTE_TOOL_DURATION, "s", "Tool execution duration", g.EXECUTE_TOOL_BUCKETS
        )


def usage_attributes(usage: Mapping[str, Any] | None) -> dict[str, AttributeValue]:
    """Anthropic usage as GenAI attributes; input tokens include both cache parts."""
    if not usage:
        return {}
    counts = {k: v for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)}
    read = counts.get("cache_read_input_tokens", 0)
    created = counts.get("cache_creation_input_tokens", 0)
    out: dict[str, AttributeValue] = {
        g.USAGE_INPUT_TOKENS: counts.get("input_tokens", 0) + read + created,
        g.USAGE_CACHE_READ_INPUT_TOKENS: read,
        g.USAGE_CACHE_CREATION_INPUT_TOKENS: created,
    }
    if "output_tokens" in counts:
        out[g.USAGE_OUTPUT_TOKENS] = counts["output_tokens"]
    return out


def error_attributes(error: str | None) -> dict[str, AttributeValue]:
    return {g.ERROR_TYPE: error} if error else {}


def mark_failed(span: Span, error: str | None) -> None:
    if error:
        span.set_attribute(g.ERROR_TYPE, error)
        span.set_status(Status(StatusCode.ERROR, error))


def seconds(ns: int) -> float:
    return max(0, ns) / 1e9
