// The agent's own plan: the latest TodoWrite list, or the tasks of TaskCreate/TaskUpdate.

import { el } from "./util.js";

export class Plan {
  constructor(onChange) {
    this.onChange = onChange;
    this.todos = null;
    this.tasks = new Map();
    this.creating = new Map();
  }

  /** A main-agent tool.called event. */
  called(name, id, input) {
    if (!input || typeof input !== "object") return;
    if (name === "TodoWrite" && Array.isArray(input.todos)) {
      this.todos = input.todos.map((t) => ({ content: t.content, activeForm: t.activeForm, status: t.status }));
      this.emit(this.todos);
    } else if (name === "TaskCreate") {
      this.creating.set(id, { content: input.subject || input.description || "task", activeForm: input.activeForm, status: "pending" });
    } else if (name === "TaskUpdate") {
      const task = this.tasks.get(String(input.taskId));
      if (!task) return;
      if (input.status === "deleted") this.tasks.delete(String(input.taskId));
      else Object.assign(task, {
        status: input.status || task.status,
        content: input.subject || task.content,
        activeForm: input.activeForm || task.activeForm,
      });
      this.emitTasks();
    }
  }

  /** A main-agent tool.result event: TaskCreate answers with the new task's id. */
  result(id, data) {
    const task = this.creating.get(id);
    if (!task) return;
    this.creating.delete(id);
    if (data.is_error) return;
    const text = typeof data.content === "string" ? data.content : JSON.stringify(data.content);
    const match = /#(\d+)/.exec(text || "");
    this.tasks.set(match ? match[1] : String(this.tasks.size + 1), task);
    this.emitTasks();
  }

  emitTasks() {
    const ids = [...this.tasks.keys()].sort((a, b) => Number(a) - Number(b));
    this.emit(ids.map((id) => this.tasks.get(id)));
  }

  emit(items) {
    this.onChange(items);
  }
}

/** Render plan items as a checklist into `list`. */
export function renderChecklist(list, items) {
  list.replaceChildren(
    ...items.map((item) => {
      const status = ["completed", "in_progress"].includes(item.status) ? item.status : "pending";
      const text = status === "in_progress" && item.activeForm ? item.activeForm : item.content;
      return el("li", { dataset: { status } },
        el("span.check", { "aria-hidden": "true" }),
        el("span.check-text", { text }),
        el("span.sr-only", { text: ` (${status.replace("_", " ")})` }));
    }),
  );
}
