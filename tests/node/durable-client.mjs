// The README's Durable Streams snippet, run: read an agentcast session with the official
// client (@durable-streams/client) from OFFSET until its run ends, in MODE (sse | long-poll).
// Prints {"seqs": [...], "offset": "<the offset after the last batch>"}.
// usage: node durable-client.mjs GATEWAY SESSION TOKEN OFFSET MODE
import { stream } from "@durable-streams/client"

const [gateway, session, token, startOffset, mode] = process.argv.slice(2)
const terminal = new Set(["run.completed", "run.failed", "run.cancelled"])

// -- the snippet ------------------------------------------------------------------
const res = await stream({
  url: `${gateway}/ds/v1/sessions/${session}`,
  headers: { Authorization: `Bearer ${token}` },
  offset: startOffset, // "-1" = from the start, "now", or an offset (or cursor) you kept
  live: mode, // "sse" or "long-poll"; false = catch-up only
})
const seqs = []
let offset = startOffset
await new Promise((resolve) => {
  res.subscribeJson(async (batch) => {
    for (const event of batch.items) seqs.push(event.seq) // agentcast envelopes, in order
    offset = batch.offset // keep it: resume from here after a reload, exactly
    if (batch.items.some((e) => terminal.has(e.type))) {
      res.cancel()
      resolve()
    }
  })
})
// ---------------------------------------------------------------------------------
console.log(JSON.stringify({ seqs, offset }))
