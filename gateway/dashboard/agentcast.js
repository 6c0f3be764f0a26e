// agentcast.js: the browser client of an agentcast gateway (served at /static/agentcast.js).
//
// No build step, no dependencies: `import { Client } from "/static/agentcast.js"`.
//
//   const client = new Client({ token });
//   client.events(session, { on: { "text.delta": (e) => out.append(e.data.text) } });
//   const { session } = await client.run("Explain streaming");
//
// Every stream resumes by itself, exactly after the last event it delivered:
// - over EventSource ("sse", the default): the browser reconnects with
//   Last-Event-ID after a network error; when it gives up (an HTTP error, a
//   gateway down for a while) we ask the same URL with fetch why: a 4xx is
//   final (onState "error"), anything else is retried with jittered backoff
//   from `from=<last cursor>`;
// - over WebSocket ("ws"): one socket carries every session of the client;
//   after any close it reconnects with backoff and re-subscribes each session
//   `from` its own last cursor.
// A `lagged` drop (a tab that fell behind) is one more reconnect.

/** Every event type of the contract (EventSource needs each name it listens to). */
export const EVENT_TYPES = [
  "run.queued", "run.started", "status", "message.started", "text.delta", "text.completed",
  "thinking.delta", "thinking.completed", "tool.started", "tool.input.delta", "tool.called",
  "tool.result", "message.completed", "user.message", "rate_limit", "task.started",
  "task.progress", "task.completed", "run.completed", "run.failed", "run.cancelled", "sdk.other",
];
export const TERMINAL_TYPES = new Set(["run.completed", "run.failed", "run.cancelled"]);

const FINAL = new Set([400, 401, 403, 404, 410, 422]);
const BASE_DELAY_MS = 250;
const MAX_DELAY_MS = 10000;

/** A refusal by the gateway: HTTP status (0 when unreachable), API code, message. */
export class AgentcastError extends Error {
  constructor(status, code, message, extra = {}) {
    super(message);
    this.status = status;
    this.code = code;
    /** With code `cursor_expired`: the earliest cursor still available. */
    this.earliest = extra.earliest ?? null;
  }

  toString() {
    return `${this.message} (${this.code})`;
  }
}

async function errorOf(response) {
  const body = await response.json().catch(() => ({}));
  const { code, message, ...extra } = body.error || {};
  return new AgentcastError(response.status, code || `http_${response.status}`,
    message || response.statusText || "request failed", extra);
}

/** Exponential backoff with full jitter, so a restarted gateway is not stampeded. */
class Backoff {
  constructor() {
    this.attempts = 0;
  }

  next() {
    const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** this.attempts);
    this.attempts += 1;
    return Math.random() * ceiling;
  }

  reset() {
    this.attempts = 0;
  }
}

/** `on` maps a type or a `prefix.*` pattern to a callback; the result calls every match. */
function dispatcher(on = {}, onEvent = null) {
  const exact = new Map();
  const prefixes = [];
  for (const [pattern, callback] of Object.entries(on)) {
    if (pattern.endsWith(".*")) prefixes.push([pattern.slice(0, -1), callback]);
    else exact.set(pattern, callback);
  }
  return (event, cursor) => {
    exact.get(event.type)?.(event, cursor);
    for (const [prefix, callback] of prefixes) if (event.type.startsWith(prefix)) callback(event, cursor);
    onEvent?.(event, cursor);
  };
}

/**
 * An SSE stream over EventSource that survives disconnects and says how it is doing.
 * `names` are the SSE event names to listen to; `deliver(name, data, cursor)`;
 * `onState(state, error)` with state connecting | live | reconnecting | error.
 */
export class SseStream {
  constructor(url, { names, deliver, onState = () => {} }) {
    this.url = url;
    this.names = names;
    this.deliver = deliver;
    this.onState = onState;
    this.cursor = null;
    this.source = null;
    this.backoff = new Backoff();
    this.timer = null;
    this.stopped = false;
  }

  start() {
    this.onState("connecting");
    this._open();
    return this;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.source?.close();
    this.source = null;
  }

  _href() {
    const url = new URL(this.url);
    if (this.cursor) url.searchParams.set("from", this.cursor);
    return url.href;
  }

  _open() {
    if (this.stopped) return;
    const source = new EventSource(this._href());
    this.source = source;
    const deliver = (message) => {
      if (source !== this.source) return;
      if (message.lastEventId) this.cursor = message.lastEventId;
      this.backoff.reset();
      this.deliver(message.type, message.data, message.lastEventId || null);
    };
    for (const name of this.names) source.addEventListener(name, deliver);
    source.addEventListener("lagged", () => this.onState("reconnecting"));
    source.onopen = () => this.onState("live");
    source.onerror = () => {
      if (this.stopped || source !== this.source) return;
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        this._diagnose();
      } else {
        this.onState("reconnecting");
      }
    };
  }

  async _diagnose() {
    this.onState("reconnecting");
    const controller = new AbortController();
    try {
      const response = await fetch(this._href(), { signal: controller.signal });
      if (FINAL.has(response.status)) {
        const error = await errorOf(response);
        this.stop();
        this.onState("error", error);
        return;
      }
    } catch {
      // unreachable: retried below
    } finally {
      controller.abort();
    }
    this.timer = setTimeout(() => this._open(), this.backoff.next());
  }
}

/** One WebSocket for many session subscriptions, each resumed from its own cursor. */
class Socket {
  constructor(url) {
    this.url = url;
    this.subs = new Map();
    this.ws = null;
    this.backoff = new Backoff();
    this.timer = null;
  }

  add(sub) {
    if (this.subs.has(sub.session)) throw new Error(`already following ${sub.session} on this socket`);
    this.subs.set(sub.session, sub);
    if (!this.ws) this._open();
    else if (this.ws.readyState === WebSocket.OPEN) this._subscribe(sub);
  }

  remove(sub) {
    if (this.subs.get(sub.session) !== sub) return;
    this.subs.delete(sub.session);
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ op: "unsubscribe", session: sub.session }));
    if (this.subs.size === 0) this.close();
  }

  close() {
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000);
  }

  _subscribe(sub) {
    const frame = { op: "subscribe", id: `sub:${sub.session}`, session: sub.session, from: sub.cursor || sub.from };
    if (sub.types) frame.types = sub.types;
    this.ws.send(JSON.stringify(frame));
  }

  _open() {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    for (const sub of this.subs.values()) sub.onState("connecting");
    ws.onopen = () => {
      for (const sub of this.subs.values()) this._subscribe(sub);
    };
    ws.onmessage = (message) => {
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      if (frame.op === "event") {
        const sub = this.subs.get(frame.event.session);
        if (!sub) return;
        sub.cursor = frame.cursor;
        this.backoff.reset();
        sub.deliver(frame.event, frame.cursor);
      } else if (frame.op === "subscribed") {
        this.subs.get(frame.session)?.onState("live");
      } else if (frame.op === "error" && frame.code !== "lagged") {
        // A refusal of one subscription (cursor_expired, forbidden...): final for it.
        const session = frame.session ?? (String(frame.id ?? "").startsWith("sub:") ? frame.id.slice(4) : null);
        const sub = session === null ? null : this.subs.get(session);
        if (sub) {
          this.subs.delete(session);
          sub.onState("error", new AgentcastError(0, frame.code, frame.message, frame));
        }
      }
    };
    ws.onclose = (closed) => {
      if (ws !== this.ws) return;
      this.ws = null;
      if (closed.code === 1008) {
        // Policy: the token was refused or the socket flooded; reconnecting cannot help.
        for (const sub of this.subs.values()) sub.onState("error", new AgentcastError(0, "refused", closed.reason || "socket refused"));
        this.subs.clear();
        return;
      }
      for (const sub of this.subs.values()) sub.onState("reconnecting");
      if (this.subs.size) this.timer = setTimeout(() => this._open(), this.backoff.next());
    };
  }
}

/** A subscription to one session or a firehose: `stop()` ends it; `cursor` is the last seen. */
class Subscription {
  constructor(session, { from = "start", types = null, on, onEvent, onState }) {
    this.session = session;
    this.from = from;
    this.types = types;
    this.cursor = null;
    this.dispatch = dispatcher(on, onEvent);
    this.onState = onState || (() => {});
    this.stop = () => {};
  }

  deliver(event, cursor) {
    this.dispatch(event, cursor);
  }
}

export class Client {
  /**
   * @param {object} opts url (default: this page's origin), token, transport "sse" | "ws"
   */
  constructor({ url = location.origin, token = "", transport = "sse" } = {}) {
    this.url = url.replace(/\/$/, "");
    this.token = token;
    this.transport = transport;
    this.socket = null;
  }

  /**
   * Follow a session's events: `on` maps types (or `tool.*`) to callbacks
   * `(event, cursor)`, `onEvent` gets them all, `onState(state, error)` the
   * connection's state. `from`: start | now | a cursor. Returns the subscription.
   */
  events(session, opts = {}) {
    const sub = new Subscription(session, opts);
    if (this.transport === "ws") {
      this.socket ??= new Socket(this._url("/v1/ws", {}, "ws"));
      const socket = this.socket;
      socket.add(sub);
      sub.stop = () => socket.remove(sub);
      return sub;
    }
    return this._sse(`/v1/sessions/${encodeURIComponent(session)}/events`, {}, sub);
  }

  /** Follow every session matching a glob (always over SSE: a socket subscribes per session). */
  firehose(glob, opts = {}) {
    return this._sse("/v1/events", { sessions: glob }, new Subscription(glob, { from: "now", ...opts }));
  }

  /** Live progress snapshots: `onSnapshot(snapshot)`, `onSynced()` once the current ones are in. */
  progress({ onSnapshot, onSynced = () => {}, onState } = {}) {
    return new SseStream(this._url("/v1/progress"), {
      names: ["progress", "synced"],
      deliver: (name, data) => (name === "synced" ? onSynced() : onSnapshot(JSON.parse(data))),
      onState,
    }).start();
  }

  run(prompt, { session, options } = {}) {
    const body = { prompt };
    if (session) body.session = session;
    if (options) body.options = options;
    return this._call("POST", "/v1/runs", body);
  }

  cancel(session) {
    return this._call("POST", `/v1/sessions/${encodeURIComponent(session)}/cancel`);
  }

  message(session, text) {
    return this._call("POST", `/v1/sessions/${encodeURIComponent(session)}/messages`, { text });
  }

  async sessions({ state, limit } = {}) {
    const query = new URLSearchParams();
    if (state) query.set("state", state);
    if (limit) query.set("limit", String(limit));
    return (await this._call("GET", `/v1/sessions?${query}`)).sessions;
  }

  snapshot(session) {
    return this._call("GET", `/v1/sessions/${encodeURIComponent(session)}`);
  }

  close() {
    this.socket?.close();
    this.socket = null;
  }

  _sse(path, params, sub) {
    if (sub.types) params.types = sub.types.join(",");
    const stream = new SseStream(this._url(path, { ...params, from: sub.from }), {
      names: EVENT_TYPES,
      deliver: (name, data, cursor) => {
        sub.cursor = cursor;
        sub.deliver(JSON.parse(data), cursor);
      },
      onState: sub.onState,
    });
    sub.stop = () => stream.stop();
    stream.start();
    return sub;
  }

  /** A URL with the token in the query: EventSource and WebSocket cannot send headers. */
  _url(path, params = {}, scheme = null) {
    const url = new URL(path, this.url);
    for (const [key, value] of Object.entries(params)) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
    }
    if (this.token) url.searchParams.set("token", this.token);
    if (scheme === "ws") url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.href;
  }

  async _call(method, path, body) {
    const headers = { Authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(new URL(path, this.url), {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (exc) {
      throw new AgentcastError(0, "unreachable", `gateway unreachable: ${exc.message}`);
    }
    if (!response.ok) throw await errorOf(response);
    return response.json();
  }
}
