"""The wire formats a stream may speak besides agentcast's own: AG-UI 1.0, AI SDK UI messages."""

from gateway.formats.agui import AguiTranslator
from gateway.formats.aisdk import AiSdkTranslator
from gateway.formats.native import NativeTranslator
from gateway.formats.stream import FormatStream, FormattedOutput
from gateway.formats.style import Style

__all__ = ["AguiTranslator", "AiSdkTranslator", "FormatStream", "FormattedOutput",
           "NativeTranslator", "Style"]  # fmt: skip
