// The Durable Streams conformance suite (0.3.6) against a live agentcast gateway.
// Run by tests/test_durable_conformance.py with DS_URL (the gateway's /ds), DS_TOKEN
// (scopes read+run) and DS_LONG_POLL_MS; pick groups with vitest -t.
// The suite sends no credentials: every request it makes gets the bearer token here,
// so the gateway's auth stays on.
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

const token = process.env.DS_TOKEN
const plainFetch = globalThis.fetch
globalThis.fetch = (input, init = {}) => {
  const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined))
  if (!headers.has("authorization")) headers.set("authorization", `Bearer ${token}`)
  return plainFetch(input, { ...init, headers })
}

runConformanceTests({
  baseUrl: process.env.DS_URL,
  longPollTimeoutMs: Number(process.env.DS_LONG_POLL_MS ?? 3000),
})
