// A session's live transcript, built incrementally from its events.
//
// Events are deduplicated by seq (a resumed stream may repeat the last few),
// queued, and applied in animation frames within a time budget: text deltas
// append to a Text node, everything else appends nodes; nothing already on the
// page is rendered again, so a transcript of thousands of events stays smooth.

import { el, formatCost, formatCount, formatDuration, formatTime, frameLoop } from "./util.js";
import { renderMarkdown } from "./markdown.js";
import { ToolCard } from "./tools.js";
import { Plan } from "./plan.js";

/** The types the transcript shows, as a server-side filter: `sdk.other` is never sent to the page. */
export const TYPES_PARAM = "run.*,status,message.*,text.*,thinking.*,tool.*,user.message,rate_limit,task.*";
const END = new Set(["run.completed", "run.failed", "run.cancelled"]);

class Block {
  constructor(kind, open) {
    this.kind = kind;
    this.open = open;
    open.add(this);
    this.done = false;
    this.text = document.createTextNode("");
    if (kind === "thinking") {
      this.label = el("span", { text: "Thinking…" });
      this.node = el("details.thinking.streaming", null, el("summary", null, this.label), el("div.thinking-text", null, this.text));
    } else {
      this.node = el("div.text.streaming", null, this.text);
    }
  }

  append(text) {
    this.text.appendData(text);
  }

  complete(text) {
    this.done = true;
    this.open.delete(this);
    this.node.classList.remove("streaming");
    if (typeof text === "string" && this.text.data !== text) this.text.data = text;
    if (this.kind === "thinking") {
      this.label.textContent = `Thought · ${formatCount(this.text.data.split(/\s+/).length)} words`;
    } else {
      this.node.replaceChildren(renderMarkdown(this.text.data));
    }
  }
}

export class Transcript {
  constructor(root, { onPlan, onRuns }) {
    this.root = root;
    this.tail = el("div.transcript-tail");
    root.replaceChildren(this.tail);
    this.lastSeq = 0;
    this.queue = [];
    this.tools = new Map();
    this.taskTools = new Map();
    this.contexts = new Map();
    this.openBlocks = new Set();
    this.run = null;
    this.runs = [];
    this.onRuns = onRuns;
    this.plan = new Plan(onPlan);
    this.schedule = frameLoop((deadline) => this.drain(deadline));
  }

  /** Queue one envelope; events at or below the last seq seen are duplicates. */
  push(event) {
    if (!(event.seq > this.lastSeq)) return;
    this.lastSeq = event.seq;
    this.queue.push(event);
    this.schedule();
  }

  drain(deadline) {
    const root = this.root;
    const stick = root.scrollHeight - root.scrollTop - root.clientHeight < 120;
    let i = 0;
    while (i < this.queue.length) {
      try {
        this.apply(this.queue[i]);
      } catch (exc) {
        console.error("could not render event", this.queue[i], exc);
      }
      i += 1;
      if ((i & 31) === 0 && performance.now() > deadline) break;
    }
    this.queue = i === this.queue.length ? [] : this.queue.slice(i);
    if (stick) root.scrollTop = root.scrollHeight;
    return this.queue.length > 0;
  }

  apply(ev) {
    const d = ev.data || {};
    switch (ev.type) {
      case "run.queued": return this.startRun(ev);
      case "run.started": return this.runMeta(ev);
      case "message.started": this.context(ev).msg = this.message(ev, d.message_id); return;
      case "message.completed": this.context(ev).msg = null; return;
      case "text.delta": return this.block(ev, "text", d.index).append(d.text);
      case "thinking.delta": return this.block(ev, "thinking", d.index).append(d.text);
      case "text.completed": return this.complete(ev, "text", d);
      case "thinking.completed": return this.complete(ev, "thinking", d);
      case "tool.started": this.tool(ev, d.tool_use_id, d.name); return;
      case "tool.input.delta": this.tools.get(d.tool_use_id)?.inputDelta(d.partial_json); return;
      case "tool.called": return this.toolCalled(ev, d);
      case "tool.result": return this.toolResult(ev, d);
      case "user.message": return this.userMessage(ev, d);
      case "rate_limit":
        if (d.status && d.status !== "allowed") this.note(ev, `Rate limited (${d.status})`);
        return;
      case "task.started": case "task.progress": case "task.completed": return this.task(ev, d);
      default:
        if (END.has(ev.type)) this.endRun(ev, d);
    }
  }

  // -- runs ------------------------------------------------------------------------------

  startRun(ev) {
    const meta = el("span.run-meta");
    const body = el("div.run-body");
    const node = el("section.run", { dataset: { run: ev.run } },
      el("div.run-divider", null, el("span", { text: `Run ${ev.run}` }), el("span.muted", { text: formatTime(ev.ts) }), meta),
      el("div.msg.user", null, el("div.who", { text: "Prompt" }), el("div.text", { text: ev.data?.prompt ?? "" })),
      body);
    this.root.insertBefore(node, this.tail);
    this.run = { number: ev.run, node, body, meta, prompt: ev.data?.prompt, state: "running", summary: "" };
    this.contexts.set("", { container: body, msg: null });
    this.runs.push(this.run);
    this.onRuns(this.runs);
    return this.run;
  }

  currentRun(ev) {
    if (!this.run || this.run.number !== ev.run) this.startRun({ ...ev, data: { prompt: "(joined mid-run)" } });
    return this.run;
  }

  runMeta(ev) {
    const run = this.currentRun(ev);
    run.meta.textContent = ev.data?.model ? ev.data.model : "";
  }

  endRun(ev, d) {
    const run = this.currentRun(ev);
    for (const card of this.tools.values()) card.interrupt(ev.type === "run.cancelled" ? "cancelled" : "no result");
    for (const block of [...this.openBlocks]) block.complete();
    const kind = ev.type.slice(4);
    const usage = d.usage || {};
    const tokensIn = (usage.input_tokens || 0) + (usage.cache_creation_input_tokens || 0) + (usage.cache_read_input_tokens || 0);
    const facts = [
      d.duration_ms ? formatDuration(d.duration_ms) : null,
      d.num_turns ? `${d.num_turns} turn${d.num_turns === 1 ? "" : "s"}` : null,
      tokensIn || usage.output_tokens ? `${formatCount(tokensIn)} in / ${formatCount(usage.output_tokens || 0)} out tokens` : null,
      d.total_cost_usd ? formatCost(d.total_cost_usd) : null,
    ].filter(Boolean);
    const title = { completed: "Completed", failed: "Failed", cancelled: "Cancelled" }[kind];
    const detail = kind === "failed" ? `${d.kind ? `${d.kind}: ` : ""}${d.error || ""}` : kind === "cancelled" ? d.reason || "" : "";
    run.node.append(el(`div.run-summary`, { dataset: { state: kind } },
      el("span.summary-title", { text: title }),
      facts.length ? el("span.summary-facts", { text: facts.join(" · ") }) : null,
      detail ? el("div.summary-detail", { text: detail }) : null));
    run.state = kind;
    run.summary = facts.join(" · ");
    this.contexts.clear();
    this.onRuns(this.runs);
  }

  // -- messages and blocks -------------------------------------------------------------

  context(ev) {
    const key = ev.parent_tool_use_id || "";
    let ctx = this.contexts.get(key);
    if (!ctx) {
      const container = key ? this.toolFor(ev, key).children() : this.currentRun(ev).body;
      ctx = { container, msg: null };
      this.contexts.set(key, ctx);
    }
    return ctx;
  }

  message(ev, id) {
    const node = el("div.msg.assistant");
    this.context(ev).container.append(node);
    return { id, node, blocks: new Map(), order: [] };
  }

  currentMessage(ev, id) {
    const ctx = this.context(ev);
    if (!ctx.msg || (id && ctx.msg.id && ctx.msg.id !== id)) ctx.msg = this.message(ev, id);
    return ctx.msg;
  }

  block(ev, kind, index) {
    const msg = this.currentMessage(ev);
    const key = `${kind}:${index ?? msg.order.length}`;
    let block = msg.blocks.get(key);
    if (!block) {
      block = new Block(kind, this.openBlocks);
      msg.blocks.set(key, block);
      msg.order.push(block);
      msg.node.append(block.node);
    }
    return block;
  }

  complete(ev, kind, d) {
    const msg = this.currentMessage(ev, kind === "text" ? d.message_id : null);
    let block = msg.order.find((b) => b.kind === kind && !b.done);
    if (!block) {
      block = new Block(kind, this.openBlocks);
      msg.order.push(block);
      msg.node.append(block.node);
    }
    block.complete(d.text);
  }

  // -- tools -----------------------------------------------------------------------------

  tool(ev, id, name) {
    let card = this.tools.get(id);
    if (!card) {
      card = new ToolCard(id, name || "tool", ev.ts);
      this.tools.set(id, card);
      this.currentMessage(ev).node.append(card.node);
    } else {
      card.rename(name);
    }
    return card;
  }

  /** The card of a sub-agent's parent call, made up if its events came first. */
  toolFor(ev, id) {
    return this.tools.get(id) || this.tool({ ...ev, parent_tool_use_id: null }, id, "Agent");
  }

  toolCalled(ev, d) {
    this.tool(ev, d.tool_use_id, d.name).called(d.input);
    if (!ev.parent_tool_use_id) this.plan.called(d.name, d.tool_use_id, d.input);
  }

  toolResult(ev, d) {
    const card = this.tools.get(d.tool_use_id) || this.tool(ev, d.tool_use_id, "tool");
    card.result(d, ev.ts);
    if (!ev.parent_tool_use_id) this.plan.result(d.tool_use_id, d);
  }

  task(ev, d) {
    const id = d.tool_use_id || this.taskTools.get(d.task_id);
    if (!id) return;
    this.taskTools.set(d.task_id, id);
    this.toolFor(ev, id).task(ev.type, d);
  }

  userMessage(ev, d) {
    if (!ev.parent_tool_use_id && this.run && d.text === this.run.prompt && !this.run.echoed) {
      this.run.echoed = true; // a follow-up's text, already shown as the run's prompt
      return;
    }
    const who = ev.parent_tool_use_id ? "Sub-agent prompt" : "Message";
    this.context(ev).container.append(el("div.msg.user", null, el("div.who", { text: who }), el("div.text", { text: d.text })));
    this.context(ev).msg = null;
  }

  note(ev, text) {
    this.context(ev).container.append(el("div.note.small", { text }));
  }
}
