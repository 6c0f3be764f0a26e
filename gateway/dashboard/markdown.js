// A small, safe Markdown subset for finished text blocks: paragraphs, fenced code,
// lists, headings, `code` and **bold**. Builds DOM nodes; never parses HTML.

import { el } from "./util.js";

const FENCE = /^\s*```/;
const BULLET = /^\s*[-*+]\s+/;
const NUMBERED = /^\s*\d+[.)]\s+/;
const HEADING = /^(#{1,4})\s+(.*)$/;
const INLINE = /(`[^`\n]+`|\*\*[^*\n]+\*\*)/;

function inline(text) {
  const nodes = [];
  for (const part of text.split(INLINE)) {
    if (!part) continue;
    if (part.length > 2 && part.startsWith("`") && part.endsWith("`")) {
      nodes.push(el("code", { text: part.slice(1, -1) }));
    } else if (part.length > 4 && part.startsWith("**") && part.endsWith("**")) {
      nodes.push(el("strong", { text: part.slice(2, -2) }));
    } else {
      nodes.push(part);
    }
  }
  return nodes;
}

function isSpecial(line) {
  return FENCE.test(line) || BULLET.test(line) || NUMBERED.test(line) || HEADING.test(line);
}

/** A DocumentFragment rendering `text`. */
export function renderMarkdown(text) {
  const out = document.createDocumentFragment();
  const lines = String(text).split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (FENCE.test(line)) {
      const body = [];
      i += 1;
      while (i < lines.length && !FENCE.test(lines[i])) body.push(lines[i++]);
      i += 1; // the closing fence (or the end)
      out.append(el("pre.code", null, el("code", { text: body.join("\n") })));
    } else if (!line.trim()) {
      i += 1;
    } else if (HEADING.test(line)) {
      const [, marks, title] = line.match(HEADING);
      out.append(el(`h${Math.min(6, marks.length + 2)}`, null, ...inline(title)));
      i += 1;
    } else if (BULLET.test(line) || NUMBERED.test(line)) {
      const pattern = BULLET.test(line) ? BULLET : NUMBERED;
      const list = el(pattern === BULLET ? "ul" : "ol");
      while (i < lines.length && pattern.test(lines[i])) {
        list.append(el("li", null, ...inline(lines[i].replace(pattern, ""))));
        i += 1;
      }
      out.append(list);
    } else {
      const para = [];
      while (i < lines.length && lines[i].trim() && !isSpecial(lines[i])) para.push(lines[i++]);
      out.append(el("p", null, ...inline(para.join("\n"))));
    }
  }
  return out;
}
