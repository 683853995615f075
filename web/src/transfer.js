/**
 * Notebooks in and out as files: import on the list (ImportNotebook: a file
 * picked or dropped, with the data files beside it) and export from the
 * notebook (ExportNotebook, in each format the service writes). The service
 * does the converting; the page reads and saves files.
 */

import { Code, rpc } from "./client.js";
import { download, toBase64 } from "./download.js";
import { byId, h, notify } from "./dom.js";

const NOTEBOOK_FILE = /\.(ipynb|py)$/i;

/** What kind of notebook a file holds, by its name and (for .py) its text. */
function importFormat(name, text) {
  if (/\.ipynb$/i.test(name)) return "IMPORT_FORMAT_IPYNB";
  return /^import marimo\b/m.test(text) && /@app\.cell\b/.test(text) ? "IMPORT_FORMAT_MARIMO" : "IMPORT_FORMAT_PY_PERCENT";
}

/** Import the notebook among `files`; the others go along as its data files. */
export async function importFiles(files) {
  const notebookFile = files.find((file) => /\.ipynb$/i.test(file.name)) || files.find((file) => NOTEBOOK_FILE.test(file.name));
  if (!notebookFile) {
    notify("Pick or drop a notebook: a .ipynb file, a # %% script or a marimo .py file.", "error");
    return;
  }
  const content = await notebookFile.text();
  const data = [];
  for (const file of files.filter((file) => file !== notebookFile)) {
    data.push({ path: file.name, content: toBase64(new Uint8Array(await file.arrayBuffer())) });
  }
  const request = {
    name: notebookFile.name.replace(NOTEBOOK_FILE, "") || "Imported",
    format: importFormat(notebookFile.name, content),
    content,
    files: data,
  };
  let reply;
  try {
    reply = await rpc("notebook", "importNotebook", request);
  } catch (error) {
    if (error.code !== Code.Unauthenticated) notify(`Cannot import ${notebookFile.name}: ${error.message}`, "error");
    return;
  }
  showImported(reply, data.length);
}

/** The new notebook's link and the importer's notes, each naming its cell. */
function showImported(reply, fileCount) {
  const notebook = reply.notebook;
  const order = (notebook.cells || []).map((cell) => cell.id);
  const notes = reply.notes || [];
  const files = fileCount ? ` and ${fileCount} data file${fileCount === 1 ? "" : "s"}` : "";
  byId("import-summary").textContent =
    `Imported “${notebook.name}”: ${order.length} cells${files}. ` +
    (notes.length ? `${notes.length} change${notes.length === 1 ? "" : "s"} made it run reactively:` : "Nothing needed changing.");
  byId("import-notes").replaceChildren(
    ...notes.map((note) => {
      const index = order.indexOf(note.cellId);
      return h("li", {}, h("strong", { text: index < 0 ? "notebook" : `cell ${index + 1}` }), ` ${note.message}`);
    }),
  );
  byId("import-open").href = `#notebook=${encodeURIComponent(notebook.id)}`;
  byId("import-result").hidden = false;
}

/** The list's import card: a picker, and the card itself as a drop target. */
export function wireImport() {
  const zone = byId("import-zone");
  const picker = byId("import-file");
  picker.addEventListener("change", () => {
    importFiles([...picker.files]);
    picker.value = "";
  });
  zone.addEventListener("dragover", (event) => {
    if (!event.dataTransfer?.types.includes("Files")) return;
    event.preventDefault();
    zone.classList.add("drop-target");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("drop-target"));
  zone.addEventListener("drop", (event) => {
    zone.classList.remove("drop-target");
    if (!event.dataTransfer?.files.length) return;
    event.preventDefault();
    importFiles([...event.dataTransfer.files]);
  });
}

/** Export the open notebook in `format` (an ExportFormat name) and download it. */
export async function exportNotebook(session, format) {
  const reply = await session.call("notebook", "exportNotebook", { format }, "Export");
  if (reply) download(reply.fileName, reply.mediaType, reply.content);
}
