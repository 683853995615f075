/**
 * Export: the notebook as a Python script (Markdown as comments, SQL through
 * DuckDB as the kernel runs it without a database) or as one HTML file with
 * the outputs of the last run. Both are built here from what the page shows,
 * as text with everything escaped, and downloaded; nothing runs.
 */

const TABLE_MIME = "application/vnd.reflow.table+json";

function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function fileName(name, extension) {
  return `${(name || "notebook").replace(/[^\w.-]+/g, "_")}.${extension}`;
}

function cellsOf(session) {
  return session.order.map((id) => session.views.get(id));
}

/** The notebook as a script that runs top to bottom. */
export function pythonScript(session, name) {
  const parts = [`# ${name || "Notebook"} (exported from Reflow)`];
  const usesSql = cellsOf(session).some((view) => view.type === "CELL_TYPE_SQL");
  if (usesSql) parts.push("import duckdb");
  cellsOf(session).forEach((view, index) => {
    const code = view.code();
    const header = `# %% cell ${index + 1}`;
    if (view.type === "CELL_TYPE_MARKDOWN") {
      parts.push(`${header} [markdown]\n${code.split("\n").map((line) => `# ${line}`.trimEnd()).join("\n")}`);
    } else if (view.type === "CELL_TYPE_SQL") {
      const target = view.cell.resultName || `_cell_${index + 1}`;
      parts.push(`${header} [sql]\n${target} = duckdb.sql(${JSON.stringify(code)}).df()`);
    } else {
      parts.push(`${header}\n${code}`);
    }
  });
  return `${parts.join("\n\n")}\n`;
}

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escape = (text) => String(text ?? "").replace(/[&<>"']/g, (c) => ESCAPES[c]);

function tableHtml(table) {
  const head = (table.columns || []).map((column) => `<th>${escape(column.name)}</th>`).join("");
  const rows = (table.rows || [])
    .map((row) => `<tr>${(row || []).map((value) => `<td>${escape(typeof value === "object" && value !== null ? JSON.stringify(value) : value ?? "")}</td>`).join("")}</tr>`)
    .join("\n");
  return `<table><thead><tr>${head}</tr></thead><tbody>${rows}</tbody></table>`;
}

function outputHtml(output) {
  const mime = output.mimeType || "";
  if (mime === TABLE_MIME && output.table) return tableHtml(output.table);
  if (/^image\/(png|jpeg|gif)$/.test(mime) && output.binary) return `<img alt="" src="data:${mime};base64,${escape(output.binary)}">`;
  if (mime === "image/svg+xml") return `<img alt="" src="data:image/svg+xml;charset=utf-8,${escape(encodeURIComponent(output.text || ""))}">`;
  if (mime === "text/html") return `<iframe sandbox="" srcdoc="${escape(output.text || "")}"></iframe>`;
  if ("json" in output) return `<pre>${escape(JSON.stringify(output.json, null, 2))}</pre>`;
  return `<pre>${escape(output.text ?? output.alternatives?.["text/plain"] ?? "")}</pre>`;
}

/** The notebook with its outputs, as one self-contained HTML file. */
export function htmlPage(session, name) {
  const cells = cellsOf(session).map((view, index) => {
    const result = view.result || {};
    const outputs = [
      result.stdout ? `<pre class="stdout">${escape(result.stdout)}</pre>` : "",
      result.stderr ? `<pre class="stderr">${escape(result.stderr)}</pre>` : "",
      ...(result.outputs || []).map(outputHtml),
      result.error ? `<pre class="error">${escape(result.error.traceback || result.error.message)}</pre>` : "",
    ].join("\n");
    const kind = view.type.replace("CELL_TYPE_", "").toLowerCase();
    return `<section class="cell ${kind}"><h2>cell ${index + 1}</h2><pre class="code">${escape(view.code())}</pre>${outputs}</section>`;
  });
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(name)}</title>
<style>body{font:14px system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em}
h2{font-size:12px;color:#6b7280;margin:0}pre{background:#f6f7f9;padding:8px;white-space:pre-wrap}
pre.code{border-left:3px solid #2f6fde}pre.stderr,pre.error{background:#fff5f4;color:#9b2c24}
table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:2px 10px;text-align:left}
iframe{width:100%;border:1px solid #ddd}section{margin-bottom:1.5em}</style></head>
<body><h1>${escape(name)}</h1>
${cells.join("\n")}
</body></html>
`;
}

export function exportPython(session, name) {
  download(fileName(name, "py"), "text/x-python", pythonScript(session, name));
}

export function exportHtml(session, name) {
  download(fileName(name, "html"), "text/html", htmlPage(session, name));
}
