// The gateway API with the page's token, through the browser client (/static/agentcast.js).

import { AgentcastError, Client } from "/static/agentcast.js";

export const token = new URLSearchParams(location.search).get("token") || "";
export const client = new Client({ token });
export { AgentcastError as ApiError };

export const startRun = (prompt, session) => client.run(prompt, { session });
export const sendMessage = (session, text) => client.message(session, text);
export const cancelRun = (session) => client.cancel(session);
