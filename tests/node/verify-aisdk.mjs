// Validate AI SDK UI message streams as DefaultChatTransport reads them: parseJsonEventStream
// with uiMessageChunkSchema, folded by readUIMessageStream (terminateOnError). Each argument
// is one stream; several files joined with "+" are one stream cut and resumed (their bodies
// concatenated, as a client continuing its message sees them).
// Prints one JSON line per stream: {file, ok, chunks, types, parts, text, error?}.
import { readFileSync } from "node:fs";
import { parseJsonEventStream, readUIMessageStream, uiMessageChunkSchema } from "ai";

async function verify(arg) {
  const body = Buffer.concat(arg.split("+").map((f) => readFileSync(f)));
  const types = [];
  let errorText;
  const bytes = new Response(body).body;
  const chunks = parseJsonEventStream({ stream: bytes, schema: uiMessageChunkSchema }).pipeThrough(
    new TransformStream({
      transform(result, controller) {
        if (!result.success) throw new Error(`chunk: ${result.error?.message ?? result.error}`);
        types.push(result.value.type);
        if (result.value.type === "error") errorText = result.value.errorText;
        controller.enqueue(result.value);
      },
    }),
  );
  let message;
  try {
    for await (const m of readUIMessageStream({ stream: chunks, terminateOnError: true })) message = m;
    const parts = (message?.parts ?? []).map((p) => p.type);
    const text = (message?.parts ?? []).filter((p) => p.type === "text").map((p) => p.text).join("");
    return { file: arg, ok: true, chunks: types.length, types, parts, text, id: message?.id };
  } catch (error) {
    // terminateOnError surfaces a well-formed `error` chunk as a throw: that is the run failing.
    const thrown = String(error?.message ?? error);
    if (errorText !== undefined && thrown === errorText && types.at(-1) === "error") {
      return { file: arg, ok: true, chunks: types.length, types, parts: [], errorText };
    }
    return { file: arg, ok: false, chunks: types.length, types, error: String(error?.message ?? error) };
  }
}

for (const arg of process.argv.slice(2)) console.log(JSON.stringify(await verify(arg)));
