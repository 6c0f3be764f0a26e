// An SSE subscription that survives disconnects and says how it is doing.
//
// EventSource reconnects by itself after a network error and sends the last
// `id:` it saw as Last-Event-ID, so the gateway resumes exactly after it. It
// gives up for good on an HTTP error (or a gateway that is down for a while):
// then we ask the same URL with fetch to learn why. A 4xx is final and shown;
// anything else is retried with backoff, resuming with `from=<last cursor>`.

import { ApiError, streamUrl, token } from "./api.js";

const FINAL = new Set([400, 401, 403, 404, 410, 422]);
const MAX_DELAY_MS = 15000;

export class Stream {
  /**
   * @param {string} path e.g. /v1/sessions/s_1/events
   * @param {object} opts params (query), events (names to listen to),
   *   onEvent(name, data, cursor), onState(state, error) with state one of
   *   connecting | live | reconnecting | error
   */
  constructor(path, { params = {}, events, onEvent, onState }) {
    this.path = path;
    this.params = params;
    this.events = events;
    this.onEvent = onEvent;
    this.onState = onState;
    this.cursor = null;
    this.source = null;
    this.attempts = 0;
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
    if (this.source) this.source.close();
    this.source = null;
  }

  _url() {
    const params = { ...this.params };
    if (this.cursor) params.from = this.cursor;
    return streamUrl(this.path, params);
  }

  _open() {
    if (this.stopped) return;
    const source = new EventSource(this._url());
    this.source = source;
    const deliver = (event) => {
      if (event.lastEventId) this.cursor = event.lastEventId;
      this.onEvent(event.type, event.data, event.lastEventId);
    };
    for (const name of this.events) source.addEventListener(name, deliver);
    source.addEventListener("lagged", () => this.onState("reconnecting"));
    source.onopen = () => {
      this.attempts = 0;
      this.onState("live");
    };
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
      const response = await fetch(this._url(), {
        headers: { Authorization: `Bearer ${token}` },
        signal: controller.signal,
      });
      if (FINAL.has(response.status)) {
        const body = await response.json().catch(() => ({}));
        const error = body.error || {};
        this.stop();
        this.onState("error", new ApiError(response.status, error.code || "error", error.message || response.statusText));
        return;
      }
    } catch {
      // unreachable: retry below
    } finally {
      controller.abort();
    }
    this.attempts += 1;
    const delay = Math.min(MAX_DELAY_MS, 500 * 2 ** this.attempts) * (0.5 + Math.random() / 2);
    this.timer = setTimeout(() => this._open(), delay);
  }
}

/** Show a stream's state in a `.conn` indicator element. */
export function showConnection(node, state, error) {
  const labels = { connecting: "connecting", live: "live", reconnecting: "reconnecting…", error: "disconnected" };
  node.dataset.state = state;
  node.querySelector(".conn-label").textContent = labels[state] || state;
  node.title = error ? String(error) : `stream ${labels[state] || state}`;
}
