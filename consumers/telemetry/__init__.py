"""OpenTelemetry GenAI spans and metrics, rebuilt from the events by the metrics consumer."""

from consumers.telemetry.export import Telemetry, recorder, telemetry_from
from consumers.telemetry.recorder import GenAiRecorder

__all__ = ["GenAiRecorder", "Telemetry", "recorder", "telemetry_from"]
