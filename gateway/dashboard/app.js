// The dashboard: two views on one page, chosen by the URL's hash (#/ and #/s/<session>).

import { startRun, token } from "./api.js";
import { chatInput, mountSessionView, showFormError } from "./session.js";
import { mountSessionsTable, sessionHref } from "./sessions.js";
import { store } from "./store.js";
import { el } from "./util.js";

const $ = (id) => document.getElementById(id);

function banner(message) {
  const node = $("banner");
  node.hidden = !message;
  node.textContent = message || "";
}

function mountNewRun() {
  const form = $("new-run");
  const prompt = $("new-run-prompt");
  const session = $("new-run-session");
  const button = $("new-run-submit");
  const regrow = chatInput(prompt);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!prompt.value.trim()) return;
    button.disabled = true;
    try {
      const run = await startRun(prompt.value, session.value.trim() || undefined);
      prompt.value = "";
      session.value = "";
      regrow();
      showFormError($("new-run-error"), null);
      location.hash = sessionHref(run.session);
    } catch (error) {
      showFormError($("new-run-error"), error);
    } finally {
      button.disabled = false;
    }
  });
}

function main() {
  if (!token) {
    banner("No token in this page's address. Open the dashboard link that `agentcast up` printed (…/?token=…), or make one with `agentcast token --scope read,run`.");
  }
  store.connect($("progress-conn"), (error) => banner(`The progress stream was refused: ${error.message} (${error.code}). Check the token in the address.`));
  const table = mountSessionsTable();
  mountNewRun();
  const sessionView = mountSessionView();
  const route = () => {
    const match = /^#\/s\/([^/]+)$/.exec(location.hash);
    const session = match ? decodeURIComponent(match[1]) : null;
    $("sessions-view").hidden = Boolean(session);
    $("session-view").hidden = !session;
    $("crumbs").replaceChildren(...(session
      ? [el("a", { href: "#/", text: "Sessions" }), el("span.sep", { text: "/" }), el("span.mono", { text: session })]
      : [el("span", { text: "Sessions" })]));
    document.title = session ? `${session} · agentcast` : "agentcast";
    table.show(!session);
    sessionView.rail.show(Boolean(session));
    if (session) sessionView.open(session);
    else sessionView.close();
  };
  window.addEventListener("hashchange", route);
  route();
}

main();
