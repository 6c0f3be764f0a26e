// One tool call in the transcript: name, streamed input, result, duration, sub-agent events.

import { el, formatCount, formatDuration, preview, setText } from "./util.js";

const RESULT_PREVIEW_CHARS = 20000;

/** What a tool call is about, in one line, from its complete input. */
export function toolSummary(name, input) {
  if (!input || typeof input !== "object") return "";
  switch (name) {
    case "Bash": return input.command;
    case "Read": case "Write": case "Edit": case "NotebookEdit": return input.file_path || input.notebook_path;
    case "Grep": case "Glob": return input.pattern;
    case "Task": case "Agent": return input.description;
    case "TaskCreate": return input.subject;
    case "TaskUpdate": return `#${input.taskId}${input.status ? ` → ${input.status}` : ""}`;
    case "TodoWrite": return `${(input.todos || []).length} items`;
    case "WebFetch": return input.url;
    case "WebSearch": return input.query;
    default: {
      const first = Object.values(input).find((v) => typeof v === "string");
      return first || "";
    }
  }
}

/** The text of a tool result's content: a string, or text blocks, or JSON. */
export function resultText(content) {
  if (content === null || content === undefined) return "";
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content.map((block) => (block && block.type === "text" ? block.text : JSON.stringify(block))).join("\n");
  }
  return JSON.stringify(content, null, 2);
}

export class ToolCard {
  constructor(id, name, ts) {
    this.id = id;
    this.name = name;
    this.startedAt = ts;
    this.finished = false;
    this.summary = el("span.tool-summary.mono");
    this.meta = el("span.tool-meta", null, el("span.spinner", { "aria-label": "running" }));
    this.nameNode = el("span.tool-name", { text: name });
    this.input = document.createTextNode("");
    this.inputBox = el("pre.tool-input.mono", null, this.input);
    this.node = el(
      "div.tool",
      { dataset: { status: "running", tool: name, toolUseId: id } },
      el("div.tool-head", {
        title: "Show or hide the input", role: "button", tabindex: "0",
        onclick: () => this.node.classList.toggle("collapsed"),
        onkeydown: (e) => (e.key === "Enter" || e.key === " ") && (e.preventDefault(), this.node.classList.toggle("collapsed")),
      },
        el("span.tool-icon", { "aria-hidden": "true" }), this.nameNode, this.summary, this.meta),
      this.inputBox,
    );
    this.childBox = null;
    this.resultBox = null;
    this.taskLine = null;
  }

  rename(name) {
    if (name && name !== this.name) {
      this.name = name;
      this.node.dataset.tool = name;
      setText(this.nameNode, name);
    }
  }

  inputDelta(partial) {
    if (partial && this.input.isConnected) this.input.appendData(partial);
  }

  /** The complete input replaces the streamed JSON: one `key  value` row per field. */
  called(input) {
    setText(this.summary, preview(toolSummary(this.name, input), 160));
    const fields = input && typeof input === "object" && !Array.isArray(input)
      ? Object.entries(input).filter(([, v]) => v !== null && v !== undefined && v !== false && v !== "")
      : [["input", input]];
    const box = el("div.tool-input.kv.mono", null, ...fields.flatMap(([key, value]) => [
      el("span.k", { text: key }),
      el("span.v", { text: typeof value === "string" ? value : JSON.stringify(value, null, 2) }),
    ]));
    this.inputBox.replaceWith(box);
    this.inputBox = box;
  }

  result(data, ts) {
    this.finished = true;
    const isError = Boolean(data.is_error);
    this.node.dataset.status = isError ? "error" : "done";
    // A finished call folds its input away (the head shows what it was about); errors stay open.
    this.node.classList.toggle("collapsed", !isError);
    const took = this.startedAt && ts ? (ts - this.startedAt) / 1e6 : 0;
    this.meta.replaceChildren(el("span.duration", { text: formatDuration(took) }));
    const text = resultText(data.content);
    const body = el("pre.tool-output.mono");
    const details = el(
      "details.tool-result",
      isError ? { open: true } : null,
      el("summary", null,
        el("span.result-label", { text: isError ? "Error" : "Result" }),
        el("span.result-preview.mono", { text: preview(text, 140) || "(empty)" }),
        data.truncated ? el("span.tag", { text: "truncated" }) : null),
      body,
    );
    // Results can be large: fill the text only when somebody opens it.
    const fill = () => {
      if (body.firstChild) return;
      const shown = text.length > RESULT_PREVIEW_CHARS ? `${text.slice(0, RESULT_PREVIEW_CHARS)}\n… (${formatCount(text.length)} chars)` : text;
      body.textContent = shown;
    };
    if (isError) fill();
    details.addEventListener("toggle", fill);
    // After the sub-agent's work (if any): the result is what the call ended with.
    if (this.resultBox) this.resultBox.replaceWith(details);
    else this.node.append(details);
    this.resultBox = details;
  }

  interrupt(label) {
    if (this.finished) return;
    this.finished = true;
    this.node.dataset.status = "interrupted";
    this.meta.replaceChildren(el("span.duration", { text: label }));
  }

  /** The container for sub-agent events nested under this call. */
  children() {
    if (!this.childBox) {
      this.childBox = el("div.tool-children");
      this.node.insertBefore(this.childBox, this.resultBox);
    }
    return this.childBox;
  }

  /** A task.* event about the sub-agent this call started. */
  task(type, data) {
    if (!this.taskLine) {
      this.taskLine = el("div.task-line.small");
      this.node.firstChild.after(this.taskLine);
    }
    const usage = data.usage || {};
    const parts = [
      "Sub-agent",
      data.status || (type === "task.started" ? "started" : type === "task.completed" ? "completed" : ""),
      type === "task.progress" && data.description ? data.description : null,
      usage.tool_uses ? `${usage.tool_uses} tool${usage.tool_uses === 1 ? "" : "s"}` : null,
      usage.total_tokens ? `${formatCount(usage.total_tokens)} tokens` : null,
    ].filter(Boolean);
    setText(this.taskLine, parts.join(" · "));
  }
}
