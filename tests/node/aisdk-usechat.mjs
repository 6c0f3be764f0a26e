// The README's useChat transport, run for real against the gateway: send a message (a run),
// read it as useChat does, and ask the resume route before and after.
// Usage: node aisdk-usechat.mjs GATEWAY_URL TOKEN CHAT_ID PROMPT
import { DefaultChatTransport, readUIMessageStream } from "ai";

const [GW, TOKEN, chatId, PROMPT] = process.argv.slice(2);

// --- snippet (README "Plug in your front end") ---
const headers = { Authorization: `Bearer ${TOKEN}` };

// useChat POSTs the conversation to `api`; agentcast runs the last message as a run and
// streams it. Its resume GET (`${api}/${chatId}/stream`) is served by the gateway as is.
async function agentcastFetch(url, init) {
  if (init.method !== "POST") return fetch(url, init);
  const { id, messages } = JSON.parse(init.body);
  const prompt = messages.at(-1).parts.filter((p) => p.type === "text").map((p) => p.text).join("");
  const queued = await fetch(`${GW}/v1/runs`, {
    method: "POST",
    headers: { ...headers, "content-type": "application/json" },
    body: JSON.stringify({ session: id, prompt }),
  });
  const { session, run } = await queued.json();
  return fetch(`${GW}/v1/sessions/${session}/stream?run=${run}`, { headers, signal: init.signal });
}

const transport = new DefaultChatTransport({ api: `${GW}/v1/sessions`, headers, fetch: agentcastFetch });
// React: const { messages, sendMessage } = useChat({ id: chatId, transport, resume: true });
// --- end of snippet ---

const before = await transport.reconnectToStream({ chatId });
const stream = await transport.sendMessages({
  chatId, trigger: "submit-message", messageId: undefined, abortSignal: undefined,
  messages: [{ id: "u1", role: "user", parts: [{ type: "text", text: PROMPT }] }],
});
let message;
for await (const m of readUIMessageStream({ stream, terminateOnError: true })) message = m;
const after = await transport.reconnectToStream({ chatId });
console.log(JSON.stringify({ before, after, message }));
