/** Outputs by MIME type, and a small Markdown renderer (DOM nodes only). */

import { h } from "./dom.js";

const TABLE_MIME = "application/vnd.reflow.table+json";
const CHART_MIME = /^application\/vnd\.(vega(lite)?\.v\d+|plotly\.v1)[+.]json$/;
const RASTER_MIMES = new Set(["image/png", "image/jpeg", "image/gif"]);

/**
 * One output as an element; unknown types fall back to their text.
 * `context.fetchRows(tableId, offset)` fetches more rows of a table.
 */
export function renderOutput(output, context = {}) {
  const mime = output.mimeType || "";
  const wrap = (child) => h("div", { class: "output", "data-mime": mime }, child);
  if (mime === TABLE_MIME && output.table) return wrap(renderTable(output.table, context.fetchRows));
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

const PAGE_ROWS = 20;

/**
 * A table, built cell by cell as text: with its row numbers, 20 rows to a
 * page, sorted by a column when its header is clicked (again: descending, a
 * third time: as sent). The kernel sent the first rows; paging past them
 * fetches more from the kernel (GetTableRows) when `fetchRows` is given and
 * the table has an id. Sorting orders the rows fetched so far.
 */
function renderTable(table, fetchRows) {
  const columns = table.columns || [];
  const first = Number(table.rowOffset || 0);
  const rows = (table.rows || []).map((values, index) => ({ position: first + index, values: values || [] }));
  const total = Number(table.totalRows || rows.length);
  const fetchable = Boolean(table.tableId && fetchRows);
  const state = { page: 0, column: -1, descending: false, loading: false };
  const body = h("tbody");
  const pager = h("span", { class: "pager" });
  const info = h("span");
  const problem = h("p", { class: "table-problem", hidden: true });
  const headers = columns.map((column, index) =>
    h(
      "th",
      { class: "sortable", title: "Sort by this column", "aria-sort": "none", onclick: () => sortBy(index) },
      h("span", { text: column.name ?? "" }),
      h("span", { class: "dtype", text: column.dtype || "" }),
    ),
  );
  const sorted = () => {
    if (state.column < 0) return rows;
    const direction = state.descending ? -1 : 1;
    return [...rows].sort((a, b) => direction * compareValues(a.values[state.column], b.values[state.column]));
  };
  // Unsorted, every row can be paged to (fetched on the way); sorted, the loaded ones.
  const reachable = () => (fetchable && state.column < 0 && problem.hidden ? total : rows.length);
  const pages = () => Math.max(1, Math.ceil(reachable() / PAGE_ROWS));
  const size = `${total} row${total === 1 ? "" : "s"} × ${columns.length} column${columns.length === 1 ? "" : "s"}`;
  const show = () => {
    const start = state.page * PAGE_ROWS;
    const visible = sorted().slice(start, start + PAGE_ROWS);
    body.replaceChildren(
      ...visible.map(({ position, values }) =>
        h("tr", {}, h("th", { class: "row-index", scope: "row", text: String(position) }), values.map(tableCell)),
      ),
    );
    headers.forEach((header, index) => {
      const sorting = index === state.column ? (state.descending ? "descending" : "ascending") : "none";
      header.setAttribute("aria-sort", sorting);
    });
    const button = (text, label, page) =>
      h("button", {
        type: "button",
        class: "link",
        text,
        "aria-label": label,
        disabled: state.loading || page < 0 || page >= pages(),
        onclick: () => goTo(page),
      });
    const shownTo = Math.min(start + PAGE_ROWS, reachable());
    pager.replaceChildren(
      ...(pages() > 1
        ? [
            button("‹", "Previous rows", state.page - 1),
            ` rows ${start + 1}–${shownTo} of ${reachable()} `,
            button("›", "Next rows", state.page + 1),
          ]
        : []),
    );
    const loaded = rows.length < total ? ` · ${rows.length} loaded` : "";
    info.textContent = `${size}${loaded}${state.loading ? " · loading…" : ""}`;
  };
  const goTo = async (page) => {
    const wanted = Math.min((page + 1) * PAGE_ROWS, total);
    if (fetchable && state.column < 0 && wanted > rows.length) {
      state.loading = true;
      show();
      try {
        const more = await fetchRows(table.tableId, rows.length);
        const offset = Number(more.rowOffset || 0);
        (more.rows || []).forEach((values, index) => rows.push({ position: offset + index, values: values || [] }));
      } catch (error) {
        problem.textContent = error.message;
        problem.hidden = false;
      }
      state.loading = false;
    }
    state.page = Math.min(page, pages() - 1);
    show();
  };
  const sortBy = (index) => {
    if (state.column !== index) Object.assign(state, { column: index, descending: false });
    else if (!state.descending) state.descending = true;
    else Object.assign(state, { column: -1, descending: false });
    state.page = 0;
    show();
  };
  show();
  return h(
    "div",
    { class: "table" },
    h(
      "div",
      { class: "table-scroll" },
      h("table", {}, h("thead", {}, h("tr", {}, h("th", { class: "row-index" }), headers)), body),
    ),
    h("p", { class: "muted table-info" }, info, pager),
    problem,
  );
}

/** Nulls last, numbers by value, anything else as text. */
function compareValues(a, b) {
  const missing = (value) => value === null || value === undefined;
  if (missing(a) || missing(b)) return missing(a) - missing(b);
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(typeof a === "object" ? JSON.stringify(a) : a).localeCompare(
    String(typeof b === "object" ? JSON.stringify(b) : b),
  );
}

function tableCell(value) {
  if (value === null || value === undefined) return h("td", { class: "null", text: "—" });
  if (typeof value === "number") return h("td", { class: "num", text: String(value) });
  if (typeof value === "object") return h("td", { text: JSON.stringify(value) });
  return h("td", { text: String(value) });
}

/**
 * An output shown in the output frame (static/frame.html): sandboxed with
 * scripts allowed but an opaque origin, under its own policy that runs no
 * inline script, so what a kernel sent (HTML, a chart spec) can touch nothing
 * of this page. The output goes in by postMessage; the frame answers with the
 * height it drew. HTML keeps its own styles there; charts are drawn by their
 * libraries (Plotly, Vega-Embed), bundled with the frame.
 */
function renderFramed(mime, message, kind) {
  const frame = h("iframe", {
    sandbox: "allow-scripts",
    src: "/static/frame.html",
    referrerpolicy: "no-referrer",
    title: kind === "chart" ? "Chart" : "HTML output",
  });
  const box = h("div", { class: kind === "chart" ? "chart" : "html-frame" }, frame);
  box.style.height = kind === "chart" ? "360px" : "120px";
  const listen = (event) => {
    if (!frame.isConnected && box.dataset.drawn) window.removeEventListener("message", listen);
    if (event.source !== frame.contentWindow) return;
    if (event.data?.type === "frame-ready") frame.contentWindow.postMessage({ type: "show", mime, ...message }, "*");
    else if (event.data?.type === "frame-drawn") {
      box.style.height = `${Math.min(900, Math.max(40, Number(event.data.height) || 0))}px`;
      box.dataset.drawn = "true";
    }
  };
  window.addEventListener("message", listen);
  return box;
}

function renderHtmlFrame(html) {
  return renderFramed("text/html", { html }, "html");
}

function renderChart(mime, spec) {
  return renderFramed(mime, { spec }, "chart");
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

