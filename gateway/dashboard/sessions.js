// The sessions table (#/) and the sessions rail of the session view, kept live from the store.
//
// Rows are keyed by session and created once; a snapshot only touches its own
// row's cells. Changes are coalesced per session and applied in animation
// frames, at most MAX_ROWS_PER_FRAME rows a frame, so hundreds of running
// sessions publishing several snapshots a second never block the page.

import { el, setText, formatCost, formatCount, formatDuration, frameLoop, totalTools } from "./util.js";
import { STATES, store } from "./store.js";

const MAX_ROWS_PER_FRAME = 150;

export const sessionHref = (session) => `#/s/${encodeURIComponent(session)}`;

/** A keyed, ordered (newest run first), filterable list of session rows. */
class SessionList {
  constructor(container, { create, update, onFlush }) {
    this.container = container;
    this.create = create;
    this.update = update;
    this.onFlush = onFlush || (() => {});
    this.rows = new Map();
    this.order = [];
    this.dirty = new Set(store.snapshots.keys());
    this.filter = () => true;
    this.visible = true;
    this.schedule = frameLoop((deadline) => this.flush(deadline));
    store.subscribe((session) => {
      if (session !== null) this.dirty.add(session);
      this.schedule();
    });
    this.schedule();
  }

  setFilter(filter) {
    this.filter = filter;
    for (const [session, row] of this.rows) row.node.hidden = !filter(store.get(session));
    this.onFlush();
  }

  /** A hidden list keeps its changes for later: no DOM work nobody sees. */
  show(visible) {
    this.visible = visible;
    if (visible) this.schedule();
  }

  flush(deadline) {
    if (!this.visible) return false;
    let done = 0;
    for (const session of this.dirty) {
      this.dirty.delete(session);
      const snapshot = store.get(session);
      if (snapshot) this.render(snapshot);
      done += 1;
      if (done >= MAX_ROWS_PER_FRAME && performance.now() > deadline) break;
    }
    this.onFlush();
    return this.dirty.size > 0;
  }

  render(snapshot) {
    let row = this.rows.get(snapshot.session);
    if (!row) {
      row = { node: this.create(snapshot.session), key: null };
      this.rows.set(snapshot.session, row);
    }
    const key = snapshot.started_at || 0;
    if (row.key !== key) this.place(snapshot.session, row, key);
    this.update(row.node, snapshot);
    row.node.hidden = !this.filter(snapshot);
  }

  place(session, row, key) {
    if (row.key !== null) this.order.splice(this.order.indexOf(session), 1);
    row.key = key;
    let lo = 0;
    let hi = this.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.rows.get(this.order[mid]).key >= key) lo = mid + 1;
      else hi = mid;
    }
    this.order.splice(lo, 0, session);
    const next = this.order[lo + 1];
    this.container.insertBefore(row.node, next ? this.rows.get(next).node : null);
  }

  visibleCount() {
    let count = 0;
    for (const row of this.rows.values()) if (!row.node.hidden) count += 1;
    return count;
  }
}

function stateBadge() {
  return el("span.badge");
}

function setBadge(node, state) {
  if (node.dataset.state !== state) {
    node.dataset.state = state;
    node.textContent = state;
  }
}

/** A progress bar and its label: "62% · todos · ~4.2 s left · 70% sure" (ETA and confidence while running). */
export function progressCell() {
  const fill = el("div.bar-fill");
  const label = el("span.pct");
  return { node: el("div.progress", null, el("div.bar", null, fill), label), fill, label };
}

export function setProgress(cell, snapshot) {
  const pct = Math.max(0, Math.min(100, snapshot.percent || 0));
  const width = `${pct.toFixed(1)}%`;
  if (cell.fill.style.width !== width) cell.fill.style.width = width;
  cell.fill.dataset.state = snapshot.state;
  const parts = [`${Math.round(pct)}%`, snapshot.percent_source || "estimate"];
  const running = snapshot.percent_source !== "final";
  if (running && snapshot.eta_ms != null) parts.push(`~${formatDuration(snapshot.eta_ms)} left`);
  if (running && snapshot.percent_confidence != null) {
    parts.push(`${Math.round(snapshot.percent_confidence * 100)}% sure`);
  }
  setText(cell.label, parts.join(" · "));
}

function createTableRow(session) {
  const link = el("a.mono", { href: sessionHref(session), text: session });
  const progress = progressCell();
  const cells = {
    state: stateBadge(),
    progress,
    activity: el("td.activity"),
    run: el("td.num"),
    turns: el("td.num"),
    tools: el("td.num"),
    tokens: el("td.num"),
    cost: el("td.num"),
    duration: el("td.num"),
  };
  const row = el(
    "tr",
    { dataset: { session }, onclick: (e) => e.target.closest("a") || (location.hash = sessionHref(session)) },
    el("td.session", null, link),
    el("td", null, cells.state),
    el("td.col-progress", null, progress.node),
    cells.activity, cells.run, cells.turns, cells.tools, cells.tokens, cells.cost, cells.duration,
  );
  row.cells_ = cells;
  return row;
}

function updateTableRow(row, s) {
  const c = row.cells_;
  setBadge(c.state, s.state);
  setProgress(c.progress, s);
  setText(c.activity, s.activity || (s.state === "running" ? "Thinking" : ""));
  setText(c.run, s.run);
  setText(c.turns, s.turns);
  const tools = totalTools(s);
  setText(c.tools, s.tool_errors ? `${tools} (${s.tool_errors} err)` : tools);
  c.tools.title = Object.entries(s.tool_calls || {}).map(([k, v]) => `${k}: ${v}`).join("\n");
  setText(c.tokens, `${formatCount(s.tokens?.input)} / ${formatCount(s.tokens?.output)}`);
  setText(c.cost, formatCost(s.cost_usd));
  setText(c.duration, formatDuration(s.duration_ms));
}

/** The #/ view: filter chips with counts, search, and the table. */
export function mountSessionsTable() {
  const body = document.getElementById("sessions-body");
  const empty = document.getElementById("sessions-empty");
  const chips = document.getElementById("state-filter");
  const search = document.getElementById("session-search");
  let state = "all";
  const chip = (value) =>
    el("button.chip", { type: "button", role: "tab", dataset: { state: value }, onclick: () => select(value) },
      el("span.chip-label", { text: value }), el("span.chip-count", { text: "0" }));
  const all = ["all", ...STATES].map(chip);
  chips.append(...all);

  const counts = () => {
    const n = { all: store.snapshots.size };
    for (const s of store.snapshots.values()) n[s.state] = (n[s.state] || 0) + 1;
    for (const node of all) {
      setText(node.lastChild, n[node.dataset.state] || 0);
      node.setAttribute("aria-selected", String(node.dataset.state === state));
    }
    const visible = list.visibleCount();
    empty.hidden = visible > 0;
    setText(empty, !store.synced ? "Waiting for sessions…" : store.snapshots.size ? "No session matches this filter." : "No sessions yet: start a run above.");
  };
  const list = new SessionList(body, { create: createTableRow, update: updateTableRow, onFlush: counts });
  const apply = () => {
    const needle = search.value.trim().toLowerCase();
    list.setFilter((s) => (state === "all" || s.state === state) && (!needle || s.session.toLowerCase().includes(needle)));
  };
  const select = (value) => {
    state = value;
    apply();
  };
  search.addEventListener("input", apply);
  apply();
  return list;
}

function createRailItem(session) {
  const progress = progressCell();
  const item = el(
    "li.rail-item",
    { dataset: { session } },
    el("a", { href: sessionHref(session) },
      el("span.rail-top", null, el("span.state-dot"), el("span.mono.rail-id", { text: session })),
      el("span.rail-activity.muted.small"),
      progress.node),
  );
  item.progress_ = progress;
  return item;
}

let railCurrent = null;

function updateRailItem(item, s) {
  item.classList.toggle("current", s.session === railCurrent);
  item.querySelector(".state-dot").dataset.state = s.state;
  setText(item.querySelector(".rail-activity"), s.activity || s.state);
  setProgress(item.progress_, s);
}

/** The session view's left rail: `select(session)` marks the open one. */
export function mountRail() {
  const container = document.getElementById("rail-list");
  const list = new SessionList(container, { create: createRailItem, update: updateRailItem });
  return {
    list,
    select(session) {
      railCurrent = session;
      list.flush(Infinity);
      for (const [id, row] of list.rows) row.node.classList.toggle("current", id === session);
      list.rows.get(session)?.node.scrollIntoView({ block: "nearest" });
    },
  };
}
