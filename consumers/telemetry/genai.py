"""The OpenTelemetry GenAI names agentcast emits, in one place, with the conventions they follow.

The GenAI conventions are in Development, and since opentelemetry-semantic-conventions
0.65b0 every `gen_ai.*` Python constant there is deprecated ("moved to the
OpenTelemetry GenAI semantic conventions repository", which ships no Python
package), so the names are string literals here. They follow
open-telemetry/semantic-conventions-genai: docs/gen-ai/gen-ai-metrics.md at
commit 004902b (citing semconv v1.42.0), gen-ai-agent-spans.md and
gen-ai-spans.md at commit 002c8a6. Bucket boundaries are the ones those docs advise.
"""

from __future__ import annotations

from typing import Final

SEMCONV_VERSION: Final = "1.42.0"
SCHEMA_URL: Final = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"

# -- attributes ------------------------------------------------------------------------

OPERATION_NAME: Final = "gen_ai.operation.name"
PROVIDER_NAME: Final = "gen_ai.provider.name"
CONVERSATION_ID: Final = "gen_ai.conversation.id"
AGENT_NAME: Final = "gen_ai.agent.name"
AGENT_ID: Final = "gen_ai.agent.id"
AGENT_DESCRIPTION: Final = "gen_ai.agent.description"
REQUEST_MODEL: Final = "gen_ai.request.model"
REQUEST_STREAM: Final = "gen_ai.request.stream"
RESPONSE_ID: Final = "gen_ai.response.id"
RESPONSE_MODEL: Final = "gen_ai.response.model"
RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
"""Includes cached tokens: Anthropic's input_tokens + cache_read + cache_creation."""
USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
TOOL_NAME: Final = "gen_ai.tool.name"
TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
TOOL_TYPE: Final = "gen_ai.tool.type"
TOKEN_TYPE: Final = "gen_ai.token.type"
ERROR_TYPE: Final = "error.type"

# -- values ----------------------------------------------------------------------------

OP_CHAT: Final = "chat"
OP_INVOKE_AGENT: Final = "invoke_agent"
OP_EXECUTE_TOOL: Final = "execute_tool"
PROVIDER_ANTHROPIC: Final = "anthropic"
TOKEN_INPUT: Final = "input"
TOKEN_OUTPUT: Final = "output"
TOOL_TYPE_FUNCTION: Final = "function"
TOOL_TYPE_EXTENSION: Final = "extension"
"""A tool the provider runs itself (Anthropic server tools)."""

# -- metrics (all histograms) -------------------------------------------------------------

TOKEN_USAGE: Final = "gen_ai.client.token.usage"
OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"
INVOKE_AGENT_DURATION: Final = "gen_ai.invoke_agent.duration"
EXECUTE_TOOL_DURATION: Final = "gen_ai.execute_tool.duration"

TOKEN_BUCKETS: Final = tuple(float(4**k) for k in range(14))  # 1, 4, 16 ... 67108864
OPERATION_BUCKETS: Final = tuple(0.01 * 2**k for k in range(14))  # 0.01 ... 81.92 s
TIME_TO_FIRST_CHUNK_BUCKETS: Final = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
INVOKE_AGENT_BUCKETS: Final = tuple(0.1 * 2**k for k in range(13))  # 0.1 ... 409.6 s
EXECUTE_TOOL_BUCKETS: Final = OPERATION_BUCKETS
