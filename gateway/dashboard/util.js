// DOM and formatting helpers. Event data is only ever inserted as text, never as HTML.

/** Create an element: el("div.card.big", {title: "x"}, child, "text", ...). */
export function el(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split(".");
  const node = document.createElement(tag || "div");
  if (classes.length) node.className = classes.join(" ");
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

/** Set text only when it changed (cheap to call on every update). */
export function setText(node, text) {
  const value = String(text ?? "");
  if (node.textContent !== value) node.textContent = value;
}

export function formatDuration(ms) {
  if (!ms || ms < 0) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

export function formatCount(n) {
  if (!n) return "0";
  if (n < 1000) return String(n);
  if (n < 1e6) return `${(n / 1e3).toFixed(n < 1e4 ? 1 : 0)}k`;
  return `${(n / 1e6).toFixed(1)}M`;
}

export function formatCost(usd) {
  if (!usd) return "–"; // not known before the run ends
  return usd < 0.01 ? `$${usd.toFixed(4)}` : `$${usd.toFixed(usd < 10 ? 3 : 2)}`;
}

export function formatTime(ns) {
  if (!ns) return "";
  return new Date(ns / 1e6).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function totalTools(snapshot) {
  return Object.values(snapshot.tool_calls || {}).reduce((a, b) => a + b, 0);
}

/** A short one-line preview of a long text. */
export function preview(text, max = 120) {
  const line = String(text ?? "").replace(/\s+/g, " ").trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/**
 * Run `work` in animation frames: callers `schedule()` as often as they like,
 * `work(deadline)` runs at most once per frame and returns true when it left work over.
 */
export function frameLoop(work) {
  let pending = false;
  const tick = () => {
    pending = false;
    const more = work(performance.now() + 10);
    if (more) schedule();
  };
  const schedule = () => {
    if (!pending) {
      pending = true;
      requestAnimationFrame(tick);
    }
  };
  return schedule;
}

/** Show a short-lived notice in the corner (errors stay longer). */
export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  const item = el(`div.toast.${kind}`, { role: kind === "error" ? "alert" : "status" }, message);
  box.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 8000 : 4000);
}
/** Show a stream's state in a `.conn` indicator element. */
export function showConnection(node, state, error) {
  const labels = { connecting: "connecting", live: "live", reconnecting: "reconnecting…", error: "disconnected" };
  node.dataset.state = state;
  node.querySelector(".conn-label").textContent = labels[state] || state;
  node.title = error ? String(error) : `stream ${labels[state] || state}`;
}
