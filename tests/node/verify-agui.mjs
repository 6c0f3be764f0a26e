// Validate AG-UI SSE bodies with AG-UI's own client pipeline, one file per connection:
// the client's SSE parser (transformHttpEventStream), the zod schemas of @ag-ui/core,
// then enforceEvents -> transformChunks -> verifyEvents, exactly as HttpAgent runs them.
// Prints one JSON line per file: {file, ok, events, types, error?}.
import { readFileSync } from "node:fs";
import { EventSchemas } from "@ag-ui/core/schemas";
import {
  enforceEvents, runHttpRequest, transformChunks, transformHttpEventStream, verifyEvents,
} from "@ag-ui/client";
import { lastValueFrom, tap, toArray } from "rxjs";

process.env.SUPPRESS_TRANSFORMATION_WARNINGS = "true";

async function verify(file) {
  const body = readFileSync(file);
  if (body.includes(13)) return { file, ok: false, events: 0, error: "CR in the framing" };
  const request = () => Promise.resolve(new Response(body, {
    headers: { "content-type": "text/event-stream" },
  }));
  const types = [];
  const events = transformHttpEventStream(runHttpRequest(request)).pipe(
    tap((event) => {
      const parsed = EventSchemas.safeParse(event);
      if (!parsed.success) {
        throw new Error(`schema: ${event.type}: ${JSON.stringify(parsed.error.issues).slice(0, 400)}`);
      }
    }),
    enforceEvents(), transformChunks(), verifyEvents(),
    tap((event) => types.push(event.type)),
    toArray(),
  );
  try {
    await lastValueFrom(events);
    return { file, ok: true, events: types.length, types };
  } catch (error) {
    return { file, ok: false, events: types.length, types, error: String(error?.message ?? error) };
  }
}

for (const file of process.argv.slice(2)) console.log(JSON.stringify(await verify(file)));
