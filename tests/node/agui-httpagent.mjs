// The README's AG-UI snippet, run for real: an HttpAgent reading a session from the gateway.
// Usage: node agui-httpagent.mjs GATEWAY_URL TOKEN SESSION   -> prints {messages, events, error?}
import { HttpAgent } from "@ag-ui/client";

process.env.SUPPRESS_TRANSFORMATION_WARNINGS = "true";
const [GW, TOKEN, SESSION] = process.argv.slice(2);

// --- snippet (README "Plug in your front end") ---
// HttpAgent POSTs a RunAgentInput; agentcast streams a session with a GET instead.
class AgentcastAgent extends HttpAgent {
  requestInit() {
    return { method: "GET", headers: { ...this.headers, Accept: "text/event-stream" },
             signal: this.abortController.signal };
  }
}

const agent = new AgentcastAgent({
  url: `${GW}/v1/sessions/${SESSION}/events?format=ag-ui`,
  headers: { Authorization: `Bearer ${TOKEN}` },
});
agent.subscribe({
  onTextMessageContentEvent: ({ event }) => events.push(event.delta),
  onRunFinishedEvent: () => agent.abortRun(), // the session stream stays open for later runs
});
// --- end of snippet ---

const events = [];
try {
  await agent.runAgent();
  console.log(JSON.stringify({ messages: agent.messages, events }));
} catch (error) {
  console.log(JSON.stringify({ messages: agent.messages, events, error: String(error) }));
}
