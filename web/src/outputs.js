/** Outputs by MIME type, and a small Markdown renderer (DOM nodes only). */

import { h } from "./dom.js";

const TABLE_MIME = "application/vnd.reflow.table+json";
const CHART_MIME = /^application\/vnd\.(vega(lite)?\.v\d+|plotly\.v1)[+.]json$/;
const RASTER_MIMES = new Set(["image/png", "image/jpeg", "image/gif"]);

/** One output as an element; unknown types fall back to their text. */
export function renderOutput(output) {
  const mime = output.mimeType || "";
  const wrap = (child) => h("div", { class: "output", "data-mime": mime }, child);
  if (mime === TABLE_MIME && output.table) return wrap(renderTable(output.table));
  if (mime === "text/html") return wrap(renderHtmlFrame(output.text || ""));
  if (RASTER_MIMES.has(mime) && output.binary) {
    return wrap(h("img", { src: `data:${mime};base64,${output.binary}`, alt: mime }));
  }
  if (mime === "image/svg+xml") {
    // As an image, an SVG runs no script and reaches nothing of the page.
    const src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(output.text || "")}`;
    return wrap(h("img", { src, alt: "SVG image" }));
  }
  if (mime === "text/markdown") return wrap(h("div", { class: "markdown" }, renderMarkdown(output.text || "")));
  if (CHART_MIME.test(mime)) return wrap(renderChart(mime, output.json));
  if ("json" in output) return wrap(h("pre", { class: "json", text: JSON.stringify(output.json, null, 2) }));
  if (output.text !== undefined) return wrap(h("pre", { text: output.text }));
  const plain = output.alternatives?.["text/plain"];
  if (plain !== undefined) return wrap(h("pre", { text: plain }));
  return wrap(h("p", { class: "muted", text: `(${mime || "an output"} cannot be shown here)` }));
}

/** A table preview, built cell by cell as text. */
function renderTable(table) {
  const columns = table.columns || [];
  const rows = table.rows || [];
  const head = h(
    "tr",
    {},
    columns.map((column) =>
      h("th", {}, h("span", { text: column.name ?? "" }), h("span", { class: "dtype", text: column.dtype || "" })),
    ),
  );
  const body = rows.map((row) => h("tr", {}, (row || []).map(tableCell)));
  const total = Number(table.totalRows || rows.length);
  const caption = `${total} row${total === 1 ? "" : "s"} × ${columns.length} column${columns.length === 1 ? "" : "s"}`;
  const shown = rows.length < total ? `showing ${rows.length} of ${total} rows` : caption;
  return h(
    "div",
    { class: "table" },
    h("div", { class: "table-scroll" }, h("table", {}, h("thead", {}, head), h("tbody", {}, body))),
    h("p", { class: "muted table-info", text: shown }),
  );
}

function tableCell(value) {
  if (value === null || value === undefined) return h("td", { class: "null", text: "—" });
  if (typeof value === "number") return h("td", { class: "num", text: String(value) });
  if (typeof value === "object") return h("td", { text: JSON.stringify(value) });
  return h("td", { text: String(value) });
}

/**
 * HTML from a kernel, in a frame sandboxed with no permissions at all: no
 * scripts, no forms, and an opaque origin, so it can neither run code nor
 * touch this page. Its height cannot be measured from outside; it can be resized.
 */
function renderHtmlFrame(html) {
  const frame = h("iframe", { sandbox: "", referrerpolicy: "no-referrer", title: "HTML output" });
  frame.srcdoc = html;
  const box = h("div", { class: "html-frame" }, frame);
  box.style.height = `${guessHtmlHeight(html)}px`;
  return box;
}

/** Roughly how tall some HTML renders: a line per block-level element. */
function guessHtmlHeight(html) {
  const blocks = (html.match(/<(p|div|br|tr|li|h[1-6]|pre|table|hr)\b/gi) || []).length;
  const lines = Math.max(1, blocks, html.split("\n").length / 2);
  return Math.round(Math.min(480, 48 + 28 * lines));
}

/** Charts would need their libraries; the spec is there to read. */
function renderChart(mime, spec) {
  const kind = mime.includes("plotly") ? "Plotly" : mime.includes("vegalite") ? "Vega-Lite" : "Vega";
  return h(
    "div",
    { class: "chart" },
    h("p", { class: "muted", text: `chart (${kind}): interactive charts are not drawn in this UI` }),
    h("details", {}, h("summary", { text: "spec (JSON)" }), h("pre", { class: "json", text: JSON.stringify(spec, null, 2) })),
  );
}

export function renderError(error) {
  const text = error.traceback || `${error.type || "Error"}: ${error.message || ""}`;
  return h("pre", { class: "traceback", text });
}

// -- a very small Markdown renderer (DOM nodes only) ------------------------------

/**
 * Headings, paragraphs, lists, block quotes, fenced code, and inline code,
 * bold, italics and http(s) links. Everything is built with text nodes, so no
 * input can produce markup.
 */
export function renderMarkdown(source) {
  const lines = source.replace(/\r\n?/g, "\n").split("\n");
  const blocks = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) {
      i++;
    } else if (line.startsWith("```")) {
      const code = [];
      for (i++; i < lines.length && !lines[i].startsWith("```"); i++) code.push(lines[i]);
      i++;
      blocks.push(h("pre", { text: code.join("\n") }));
    } else if (/^#{1,6}\s/.test(line)) {
      const level = line.match(/^#+/)[0].length;
      blocks.push(h(`h${level}`, {}, inline(line.slice(level).trim())));
      i++;
    } else if (/^\s*([-*+]|\d+\.)\s/.test(line)) {
      const ordered = /^\s*\d+\./.test(line);
      const items = [];
      for (; i < lines.length && /^\s*([-*+]|\d+\.)\s/.test(lines[i]); i++) {
        items.push(h("li", {}, inline(lines[i].replace(/^\s*([-*+]|\d+\.)\s+/, ""))));
      }
      blocks.push(h(ordered ? "ol" : "ul", {}, items));
    } else if (line.startsWith(">")) {
      const quoted = [];
      for (; i < lines.length && lines[i].startsWith(">"); i++) quoted.push(lines[i].replace(/^>\s?/, ""));
      blocks.push(h("blockquote", {}, renderMarkdown(quoted.join("\n"))));
    } else {
      // A paragraph: this line and the plain lines after it.
      const text = [line.trim()];
      for (i++; i < lines.length && lines[i].trim() && !BLOCK_START.test(lines[i]); i++) {
        text.push(lines[i].trim());
      }
      blocks.push(h("p", {}, inline(text.join(" "))));
    }
  }
  return blocks;
}

const BLOCK_START = /^(#{1,6}\s|```|>|\s*([-*+]|\d+\.)\s)/;
const INLINE = /`([^`]+)`|\*\*([^*]+)\*\*|\*([^*\s][^*]*)\*|_([^_\s][^_]*)_|\[([^\]]+)\]\((https?:\/\/[^)\s]+)\)/g;

function inline(text) {
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(INLINE)) {
    nodes.push(text.slice(last, match.index));
    const [, code, bold, em, em2, label, href] = match;
    if (code !== undefined) nodes.push(h("code", { text: code }));
    else if (bold !== undefined) nodes.push(h("strong", { text: bold }));
    else if (em !== undefined || em2 !== undefined) nodes.push(h("em", { text: em ?? em2 }));
    else nodes.push(h("a", { href, text: label, target: "_blank", rel: "noopener noreferrer" }));
    last = match.index + match[0].length;
  }
  nodes.push(text.slice(last));
  return nodes.filter((node) => node !== "");
}

