// The session view (#/s/<id>): header from the progress store, live transcript, actions.

import { cancelRun, client, sendMessage, startRun } from "./api.js";
import { renderChecklist } from "./plan.js";
import { mountRail, setProgress } from "./sessions.js";
import { ACTIVE, store } from "./store.js";
import { TYPES_PARAM, Transcript } from "./transcript.js";
import { el, formatCost, formatCount, formatDuration, frameLoop, setText, showConnection, toast, totalTools } from "./util.js";

const $ = (id) => document.getElementById(id);

/** Submit a textarea's form on Enter (Shift+Enter for a new line), and grow it with its text. */
export function chatInput(textarea) {
  const grow = () => {
    textarea.style.height = "auto";
    textarea.style.height = `${Math.min(textarea.scrollHeight, 200)}px`;
  };
  textarea.addEventListener("input", grow);
  textarea.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      textarea.form.requestSubmit();
    }
  });
  return grow;
}

/** Show an API error under a form (or hide it with null). */
export function showFormError(node, error) {
  node.hidden = !error;
  node.textContent = error ? `${error.message} (${error.code})` : "";
}

/**
 * A follow-up: a message to the worker that holds the session (mid-run, or for
 * a while after), else (409 not_running) a new run that continues the conversation.
 */
async function followUp(session, text) {
  try {
    return await sendMessage(session, text);
  } catch (error) {
    if (error.code !== "not_running") throw error;
    return startRun(text, session);
  }
}

export function mountSessionView() {
  const rail = mountRail();
  const bar = { fill: $("s-bar"), label: $("s-pct") };
  const cancel = $("s-cancel");
  const composer = $("composer");
  const text = $("composer-text");
  const regrow = chatInput(text);
  let current = null;

  const renderHeader = () => {
    if (!current) return false;
    const s = store.get(current.session);
    const state = s ? s.state : "waiting";
    $("s-state").dataset.state = state;
    setText($("s-state"), state);
    setText($("s-run"), s ? `run ${s.run}` : "");
    if (s) setProgress(bar, s);
    const activity = s && ACTIVE.has(s.state) ? s.activity || "Thinking" : "";
    setText($("s-activity"), activity);
    $("s-activity").hidden = !activity;
    cancel.hidden = Boolean(s) && !ACTIVE.has(s.state);
    const stats = s ? [
      ["Turns", s.turns], ["Tool calls", totalTools(s) + (s.tool_errors ? ` (${s.tool_errors} failed)` : "")],
      ["Tokens in / out", `${formatCount(s.tokens?.input)} / ${formatCount(s.tokens?.output)}`],
      ["Cost", formatCost(s.cost_usd)], ["Duration", formatDuration(s.duration_ms)],
      ["First token", s.ttft_ms ? formatDuration(s.ttft_ms) : "–"],
    ] : [];
    const dl = $("s-stats");
    if (dl.children.length !== stats.length * 2) {
      dl.replaceChildren(...stats.flatMap(([k]) => [el("dt", { text: k }), el("dd")]));
    }
    stats.forEach(([, v], i) => setText(dl.children[i * 2 + 1], v));
    const tail = current.transcript.tail;
    tail.hidden = !(s && ACTIVE.has(s.state));
    setText(tail, s ? `${s.activity || "Working"}…` : "");
    return false;
  };
  const scheduleHeader = frameLoop(renderHeader);
  store.subscribe((session) => {
    if (current && (session === null || session === current.session)) scheduleHeader();
  });

  const renderRuns = (runs) => {
    $("runs").replaceChildren(...runs.map((run) =>
      el("li", { dataset: { state: run.state } },
        el("span.run-no", { text: `#${run.number}` }),
        el("span.run-prompt", { text: run.prompt || "" }),
        el("span.run-state.small", { text: run.summary ? `${run.state} · ${run.summary}` : run.state }))));
  };
  const renderPlan = (items) => {
    renderChecklist($("plan"), items);
    $("plan-empty").hidden = items.length > 0;
  };

  cancel.addEventListener("click", async () => {
    if (!current) return;
    const { session } = current;
    cancel.disabled = true;
    try {
      await cancelRun(session);
      toast(`Cancel requested for ${session}`);
    } catch (error) {
      toast(`Cancel failed: ${error.message} (${error.code})`, "error");
    } finally {
      cancel.disabled = false;
      scheduleHeader();
    }
  });

  composer.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!current || !text.value.trim()) return;
    const button = $("composer-send");
    button.disabled = true;
    try {
      await followUp(current.session, text.value);
      text.value = "";
      regrow();
      showFormError($("composer-error"), null);
    } catch (error) {
      showFormError($("composer-error"), error);
    } finally {
      button.disabled = false;
    }
  });

  function close() {
    if (!current) return;
    current.stream.stop();
    current = null;
  }

  function open(session) {
    if (current && current.session === session) return;
    close();
    setText($("s-id"), session);
    showFormError($("composer-error"), null);
    renderPlan([]);
    const transcript = new Transcript($("transcript"), { onPlan: renderPlan, onRuns: renderRuns });
    renderRuns([]);
    const stream = client.events(session, {
      types: TYPES_PARAM.split(","),
      onEvent: (event) => transcript.push(event),
      onState: (state, error) => {
        showConnection($("events-conn"), state, error);
        if (error) toast(`Transcript stream: ${error.message} (${error.code})`, "error");
      },
    });
    current = { session, transcript, stream };
    rail.select(session);
    renderHeader();
  }

  return { open, close, rail: rail.list };
}
