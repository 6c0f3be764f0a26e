// Progress snapshots of every visible session, fed by GET /v1/progress.

import { client } from "./api.js";
import { showConnection } from "./util.js";

export const STATES = ["running", "queued", "idle", "completed", "failed", "cancelled"];
export const ACTIVE = new Set(["queued", "running", "idle"]);

class SessionStore {
  constructor() {
    this.snapshots = new Map();
    this.listeners = new Set();
    this.synced = false;
    this.stream = null;
  }

  /** Call `listener(session)` for every changed session; returns an unsubscribe function. */
  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get(session) {
    return this.snapshots.get(session);
  }

  put(snapshot) {
    const previous = this.snapshots.get(snapshot.session);
    // Snapshots of a session only move forward; an older one (a replayed KV value) is ignored.
    if (previous && (previous.updated_at || 0) > (snapshot.updated_at || 0)) return;
    this.snapshots.set(snapshot.session, snapshot);
    for (const listener of this.listeners) listener(snapshot.session);
  }

  connect(indicator, onError) {
    this.stream = client.progress({
      onSynced: () => {
        this.synced = true;
        for (const listener of this.listeners) listener(null);
      },
      onSnapshot: (snapshot) => this.put(snapshot),
      onState: (state, error) => {
        showConnection(indicator, state, error);
        if (error) onError(error);
      },
    });
  }
}

export const store = new SessionStore();
