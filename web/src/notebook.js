/**
 * One open notebook: its cells in order (each a CellView), fed by
 * WatchNotebook (gRPC-Web) for the notebook and by the gateway's WebSocket for
 * the events of every run (anyone's), and the commands the page sends (unary
 * gRPC-Web calls, RunCells as a server stream).
 *
 * The page never edits its own copy of the notebook after a command: every
 * change, ours or a collaborator's, comes back as an event, so two browsers on
 * one notebook show the same thing.
 */

import { AssistantPanel } from "./assistant.js";
import { CellView } from "./cell.js";
import { Code, auth, rpc, stream } from "./client.js";
import { byId, notify, showView } from "./dom.js";
import { FilesPanel } from "./files.js";
import { drawGraph } from "./graph.js";
import { VariablesPanel } from "./variables.js";

const PANEL_TITLES = { assistant: "Assistant", graph: "Dependencies", variables: "Variables", files: "Files" };

const RECONNECT_MAX_MS = 10_000;

/** What the page holds: who is signed in, and the open notebook. */
export const app = {
  user: null,
  devTokenCommand: "",
  /** The open NotebookSession, if the notebook page is shown. */
  notebook: null,
};

export function openNotebook(id) {
  showView("notebook");
  if (app.notebook?.id === id) return;
  app.notebook = new NotebookSession(id);
  app.notebook.connect();
}

export function closeNotebook() {
  app.notebook?.close();
  app.notebook = null;
}

/** Errors name cells as the user sees them: "cell 3", not an id. */
function positionsForIds(text, order) {
  return order.reduce(
    (message, id, index) => message.split(`cell ${id}`).join(id).split(id).join(`cell ${index + 1}`),
    text || "",
  );
}

export class NotebookSession {
  constructor(id) {
    this.id = id;
    this.order = [];
    this.views = new Map();
    this.retries = 0;
    this.revision = 0n;
    this.closed = false;
    this.socket = null;
    this.watch = null;
    this.focusOnCreate = null;
    this.activeRuns = new Set();
    this.kernel = { state: "not started", reason: "" };
    this.selected = null;
    this.dragging = new CellDragging(this);
    this.panel = null;
    this.assistant = null;
    this.variables = null;
    this.togglePanel(null);
    byId("cells").replaceChildren();
    byId("nb-name").value = "";
    this.showPresence({});
    this.showKernel();
  }

  // -- the feeds --

  connect() {
    this.setConnection("connecting");
    this.watchNotebook();
    this.openSocket();
  }

  /** WatchNotebook: a snapshot, then every change; on failure, say why or retry. */
  async watchNotebook() {
    const hangUp = new AbortController();
    this.watch = hangUp;
    try {
      await stream(
        "notebook",
        "watchNotebook",
        { notebookId: this.id, presence: true },
        (response) => !this.closed && this.applyNotebookEvent(response),
        hangUp.signal,
      );
      if (this.closed || hangUp.signal.aborted) return;
      // The server ends the watch when the notebook is deleted.
      notify("The notebook was deleted.", "error");
      this.leave();
    } catch (error) {
      if (this.closed) return;
      if (error.code === Code.Unauthenticated) return;
      if ([Code.NotFound, Code.PermissionDenied, Code.InvalidArgument].includes(error.code)) {
        notify(`Cannot open the notebook: ${error.message}`, "error");
        this.leave();
        return;
      }
      // Anything else (a restart, a slow network): retry with a growing delay;
      // the snapshot on reconnect brings us up to date.
      const delay = Math.min(RECONNECT_MAX_MS, 500 * 2 ** this.retries++);
      this.setConnection(`reconnecting in ${Math.round(delay / 1000)} s`);
      setTimeout(() => !this.closed && this.watchNotebook(), delay);
    }
  }

  /** The WebSocket: the live events of every run on the notebook. */
  openSocket() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}/ws/notebooks/${encodeURIComponent(this.id)}`;
    const socket = new WebSocket(url);
    this.socket = socket;
    // The browser cannot put headers on the handshake: the token is the first message.
    socket.onopen = () => socket.send(JSON.stringify({ type: "auth", token: auth.token }));
    socket.onmessage = (message) => this.receive(JSON.parse(message.data));
    socket.onclose = (closed) => {
      if (this.closed || socket !== this.socket) return;
      // Refusals (4401, 4403, 4404) and a deleted notebook (1000) are reported
      // by WatchNotebook; anything else is retried.
      if ([1000, 4401, 4403, 4404].includes(closed.code)) return;
      const delay = Math.min(RECONNECT_MAX_MS, 500 * 2 ** this.retries);
      setTimeout(() => !this.closed && this.openSocket(), delay);
    };
  }

  receive(message) {
    // A socket being closed may still deliver; the page is another notebook's now.
    if (this.closed) return;
    if (message.type === "execution_event") {
      this.applyExecutionEvent(message.event);
      this.layout();
    }
  }

  leave() {
    this.close();
    location.hash = "";
  }

  close() {
    this.closed = true;
    this.watch?.abort();
    this.socket?.close(1000, "left the notebook");
  }

  setConnection(text) {
    const conn = byId("conn");
    conn.textContent = text;
    conn.className = `conn conn-${text === "live" ? "live" : "down"}`;
  }

  // -- notebook events (WatchNotebookResponse) --

  /** Remember the newest notebook revision the page has seen (int64: a bigint). */
  sawRevision(revision) {
    if (typeof revision === "bigint" && revision > this.revision) this.revision = revision;
  }

  applyNotebookEvent(event) {
    this.sawRevision(event.revision);
    if (event.snapshot) this.applySnapshot(event.snapshot);
    else if (event.cellCreated) this.addCell(event.cellCreated.cell, event.cellCreated.index ?? 0);
    else if (event.cellUpdated) this.views.get(event.cellUpdated.cell.id)?.setCell(event.cellUpdated.cell);
    else if (event.cellMoved) this.moveCell(event.cellMoved.cellId, event.cellMoved.index ?? 0);
    else if (event.cellDeleted) this.removeCell(event.cellDeleted.cellId);
    else if (event.notebookChanged) this.setSettings(event.notebookChanged.notebook);
    else if (event.cellResultRecorded) {
      const { cellId, result } = event.cellResultRecorded;
      this.views.get(cellId)?.setResult(result);
    } else if (event.presence) return this.showPresence(event.presence);
    this.layout();
  }

  /** Who else has the notebook open: other users by name, our other tabs as such. */
  showPresence({ viewers = [], you }) {
    const others = viewers.filter((viewer) => viewer.viewerId !== you);
    const tabs = others.filter((viewer) => viewer.user === app.user).length;
    const names = [...new Set(others.map((viewer) => viewer.user).filter((user) => user !== app.user))];
    if (tabs) names.push(`you in ${tabs === 1 ? "another tab" : `${tabs} other tabs`}`);
    const presence = byId("presence");
    presence.hidden = names.length === 0;
    presence.textContent = names.length ? `also here: ${names.join(", ")}` : "";
    presence.title = others.map((viewer) => `${viewer.user} since ${viewer.since || "?"}`).join("\n");
  }

  applySnapshot(notebook) {
    this.retries = 0;
    this.setConnection("live");
    this.setSettings(notebook);
    const cells = notebook.cells || [];
    const kept = new Set(cells.map((cell) => cell.id));
    for (const id of this.order) if (!kept.has(id)) this.views.get(id).root.remove();
    // Views are kept across a reconnect, so unsaved edits survive it.
    const views = new Map();
    for (const cell of cells) {
      const view = this.views.get(cell.id) || new CellView(this, cell);
      view.setCell(cell);
      view.setResult(cell.result || null, cell.status);
      views.set(cell.id, view);
    }
    this.views = views;
    this.order = cells.map((cell) => cell.id);
    this.loadKernel();
  }

  addCell(cell, index) {
    if (this.views.has(cell.id)) return;
    const view = new CellView(this, cell);
    this.views.set(cell.id, view);
    this.order.splice(Math.min(index, this.order.length), 0, cell.id);
    if (this.focusOnCreate === cell.id) {
      this.focusOnCreate = null;
      queueMicrotask(() => view.focus());
    }
  }

  moveCell(id, index) {
    const from = this.order.indexOf(id);
    if (from < 0) return;
    this.order.splice(from, 1);
    this.order.splice(index, 0, id);
  }

  removeCell(id) {
    const view = this.views.get(id);
    if (view?.root.contains(document.activeElement)) {
      // The focus goes to the cell that takes its place.
      const index = this.order.indexOf(id);
      const next = this.order[index + 1] ?? this.order[index - 1];
      queueMicrotask(() => this.views.get(next)?.select());
    }
    view?.destroy();
    this.views.delete(id);
    this.order = this.order.filter((other) => other !== id);
  }

  setSettings(notebook) {
    this.setName(notebook.name);
    byId("lazy").checked = notebook.runMode === "RUN_MODE_LAZY";
  }

  setName(name) {
    const input = byId("nb-name");
    if (document.activeElement !== input) input.value = name || "Untitled";
    document.title = `${name || "Untitled"} · Reflow`;
  }

  /** Put the cells' elements in notebook order, moving only those out of place. */
  layout() {
    const container = byId("cells");
    const focused = document.activeElement;
    let previous = null;
    this.order.forEach((id, index) => {
      const view = this.views.get(id);
      view.setIndex(index, this.order.length);
      const expected = previous ? previous.nextSibling : container.firstChild;
      if (expected !== view.root) container.insertBefore(view.root, expected);
      previous = view.root;
    });
    // Moving a node blurs it; a cell moved with its buttons keeps the focus.
    if (focused instanceof HTMLElement && focused !== document.activeElement) focused.focus();
    container.classList.toggle("empty", this.order.length === 0);
    if (this.panel === "graph") this.showPanel();
  }

  // -- the side panel (assistant, dependencies, variables) --

  /** Open `name`'s panel, or close it if it is open (null closes any). */
  togglePanel(name) {
    this.panel = name && name !== this.panel ? name : null;
    for (const button of document.querySelectorAll("[data-panel]")) {
      button.setAttribute("aria-pressed", String(button.dataset.panel === this.panel));
    }
    byId("side-panel").hidden = !this.panel;
    document.querySelector(".nb-layout").classList.toggle("with-panel", Boolean(this.panel));
    this.showPanel();
  }

  showPanel() {
    if (!this.panel) return byId("panel-body").replaceChildren();
    byId("panel-title").textContent = PANEL_TITLES[this.panel];
    if (this.panel === "assistant") {
      this.assistant ??= new AssistantPanel(this);
      if (!this.assistant.root.isConnected) byId("panel-body").replaceChildren(this.assistant.root);
      this.assistant.input.focus();
    } else if (this.panel === "variables") {
      this.variables ??= new VariablesPanel(this);
      byId("panel-body").replaceChildren(this.variables.root);
      this.variables.refresh();
    } else if (this.panel === "files") {
      this.files ??= new FilesPanel(this);
      if (!this.files.root.isConnected) byId("panel-body").replaceChildren(this.files.root);
      this.files.refresh();
    } else {
      byId("panel-body").replaceChildren(drawGraph(this));
    }
  }

  /** The cell with the focus, marked so command-mode keys have a visible target. */
  setSelected(view) {
    if (this.selected === view) return;
    this.selected?.root.classList.remove("selected");
    this.selected = view;
    view.root.classList.add("selected");
  }

  /** The number users see for a cell ("cell 3"), or "a cell" if it is gone. */
  cellLabel(id) {
    const index = this.order.indexOf(id);
    return index < 0 ? "a cell" : `cell ${index + 1}`;
  }

  /** A message from the server with cell ids replaced by cell numbers. */
  humanize(text) {
    return positionsForIds(text, this.order);
  }

  // -- execution events (ExecutionEvent) --

  applyExecutionEvent(event) {
    const view = this.views.get(event.cellId);
    if (event.runStarted) this.startRun(event.runId, event.runStarted.cellIds || []);
    else if (event.cellQueued) view?.setLive("CELL_STATUS_QUEUED");
    else if (event.cellStarted) view?.startRun(event.cellStarted.executionCount);
    else if (event.streamChunk) view?.appendStream(event.streamChunk);
    else if (event.output) view?.appendOutput(event.output);
    else if (event.cellFinished) view?.setResult(event.cellFinished.result);
    else if (event.runFinished) this.finishRun(event.runId);
    else if (event.kernelStateChanged) this.setKernel(event.kernelStateChanged);
  }

  /** RunStarted lists the cells the run will execute: all of them are queued now. */
  startRun(runId, cellIds) {
    this.activeRuns.add(runId);
    for (const cellId of cellIds) this.views.get(cellId)?.setLive("CELL_STATUS_QUEUED");
    this.showKernel();
  }

  /** Cells still queued when a run ends (an interrupt dropped them) show their stored status. */
  finishRun(runId) {
    this.activeRuns.delete(runId);
    this.showKernel();
    if (this.panel === "variables") this.variables?.refresh();
    // Cells may have written files.
    if (this.panel === "files") this.files?.refresh();
    for (const view of this.views.values()) {
      if (view.liveStatus === "CELL_STATUS_QUEUED") view.setLive(null);
    }
  }

  /** A kernel state; a "dead" kernel that never had a process has simply not started. */
  setKernel({ state, reason, startTime, pid }) {
    const neverRan = state === "KERNEL_STATE_DEAD" && !startTime && !pid && !reason;
    const name = neverRan
      ? "not started"
      : (state || "KERNEL_STATE_UNKNOWN").replace("KERNEL_STATE_", "").toLowerCase();
    this.kernel = { state: name, reason: reason || "" };
    this.showKernel();
  }

  /** The kernel's last reported state, or "busy" while a run we saw start goes on. */
  showKernel() {
    if (this.closed) return;
    const state = this.activeRuns.size > 0 ? "busy" : this.kernel.state;
    const kernel = byId("kernel");
    kernel.textContent = `kernel: ${state}`;
    kernel.title = this.kernel.reason;
    kernel.className = `kernel kernel-${state.replace(" ", "-")}`;
  }

  /** The kernel's state now; a notebook that never ran has none (NOT_FOUND). */
  async loadKernel() {
    try {
      const reply = await rpc("execution", "getKernel", { notebookId: this.id });
      this.setKernel(reply.kernel || {});
    } catch (error) {
      if (error.code === Code.NotFound) this.setKernel({ state: "not started" });
    }
  }

  // -- commands (gRPC-Web) --

  /** A unary call; a failure is shown (cells named by number) and swallowed. */
  async call(service, name, request, what) {
    try {
      const reply = await rpc(service, name, { notebookId: this.id, ...request });
      this.sawRevision(reply?.revision);
      return reply;
    } catch (error) {
      if (error.code !== Code.Unauthenticated) {
        notify(`${what} failed: ${this.humanize(error.message)}`, "error");
      }
      return null;
    }
  }

  async addCellOfType(type, index, code = "") {
    const request = { type, code };
    if (index !== undefined) request.index = index;
    const reply = await this.call("notebook", "createCell", request, "Adding a cell");
    if (!reply) return null;
    const view = this.views.get(reply.cell.id);
    if (view) view.focus();
    else this.focusOnCreate = reply.cell.id;
    return reply.cell;
  }

  /** Add a cell above (0) or below (1) `view`, or at the end without one. */
  addNear(view, below) {
    const index = view ? this.order.indexOf(view.id) + (below ? 1 : 0) : this.order.length;
    return this.addCellOfType("CELL_TYPE_PYTHON", index);
  }

  /** Save (if changed), then run the cells and their dependents; [] runs the stale ones. */
  async run(cellIds) {
    await Promise.all([...this.views.values()].map((view) => view.save()));
    try {
      // The run's events reach the page through the live feed, like anyone's
      // run; this stream says when it ended and whether it was refused.
      // Naming the revision the page has seen (its saves included) lets
      // the execution service run from its own copy of the notebook.
      const request = { notebookId: this.id, cellIds, minRevision: this.revision };
      await stream("execution", "runCells", request, () => {});
    } catch (error) {
      if (error.code !== Code.Unauthenticated) notify(`Run failed: ${this.humanize(error.message)}`, "error");
    }
  }

  runCell(view) {
    if (view.type === "CELL_TYPE_MARKDOWN") return view.save();
    return this.run([view.id]);
  }

  runStale() {
    return this.run([]);
  }

  runAll() {
    const runnable = this.order.filter((id) => this.views.get(id).type !== "CELL_TYPE_MARKDOWN");
    return this.run(runnable);
  }

  /** The names other cells define, for completion: {label, detail: "cell N"}. */
  definedNames(except) {
    const names = [];
    this.order.forEach((id, index) => {
      const view = this.views.get(id);
      if (view === except) return;
      for (const name of view.cell.writes || []) names.push({ label: name, detail: `cell ${index + 1}` });
    });
    return names;
  }

  /** The kernel's completions in a cell's code (never starts a kernel). */
  complete(view, code, cursorOffset) {
    return rpc("execution", "complete", { notebookId: this.id, cellId: view.id, code, cursorOffset });
  }

  /** Rows of a table a cell displayed; throws an Error saying what to do if they are gone. */
  async tableRows(view, tableId, offset) {
    try {
      const reply = await rpc("execution", "getTableRows", { notebookId: this.id, tableId, offset: String(offset) });
      return reply.table || {};
    } catch (error) {
      if (error.code === Code.FailedPrecondition) {
        throw new Error(`The kernel no longer holds this table: re-run ${this.cellLabel(view.id)} to see more rows.`);
      }
      throw new Error(this.humanize(error.message));
    }
  }

  /**
   * Save a cell's code. `expectedCode` is what the edit started from: the
   * server refuses the save if someone else has changed the cell since, and
   * then this resolves to {conflict: <the cell as saved now>}.
   */
  async saveCell(view, code, resultName, expectedCode) {
    const request = { notebookId: this.id, cellId: view.id, code, expectedCode };
    if (resultName !== undefined) request.resultName = resultName;
    try {
      const saved = await rpc("notebook", "updateCell", request);
      this.sawRevision(saved.revision);
      return { saved };
    } catch (error) {
      if (error.reason === "CELL_CHANGED") {
        const { notebook } = await rpc("notebook", "getNotebook", { notebookId: this.id });
        const theirs = (notebook.cells || []).find((cell) => cell.id === view.id);
        if (theirs) return { conflict: theirs };
      }
      if (error.code !== Code.Unauthenticated) notify(`Saving failed: ${this.humanize(error.message)}`, "error");
      return {};
    }
  }

  setRunMode(lazy) {
    const runMode = lazy ? "RUN_MODE_LAZY" : "RUN_MODE_AUTOMATIC";
    this.call("notebook", "setRunMode", { runMode }, "Changing the run mode");
  }

  setDisabled(view, disabled) {
    this.call("notebook", "setCellDisabled", { cellId: view.id, disabled }, disabled ? "Disabling" : "Enabling");
  }

  async interrupt() {
    const reply = await this.call("execution", "interruptKernel", {}, "Interrupt");
    if (reply && !reply.interrupted) notify("Nothing was running.");
  }

  async restart() {
    if (!confirm("Restart the kernel? Its variables are lost; cells and results stay.")) return;
    if (await this.call("execution", "restartKernel", {}, "Restart")) notify("Kernel restarted.");
  }

  move(view, delta) {
    const index = this.order.indexOf(view.id) + delta;
    if (index < 0 || index >= this.order.length) return;
    this.call("notebook", "moveCell", { cellId: view.id, index }, "Moving");
  }

  /** Delete a cell; the toast offers to undo (the cell comes back with its code). */
  async remove(view) {
    const index = this.order.indexOf(view.id);
    const { type, resultName } = view.cell;
    const code = view.code();
    if (!(await this.call("notebook", "deleteCell", { cellId: view.id }, "Deleting"))) return;
    this.lastDeleted = { type, code, resultName, index };
    notify(`Deleted ${index >= 0 ? `cell ${index + 1}` : "a cell"}.`, "info", {
      label: "Undo",
      onclick: () => this.undoDelete(),
    });
  }

  async undoDelete() {
    const deleted = this.lastDeleted;
    if (!deleted) return;
    this.lastDeleted = null;
    const request = { type: deleted.type || "CELL_TYPE_PYTHON", code: deleted.code, index: deleted.index };
    if (deleted.resultName) request.resultName = deleted.resultName;
    const reply = await this.call("notebook", "createCell", request, "Undo");
    if (reply) this.focusOnCreate = reply.cell.id;
  }

  /**
   * A cell's type cannot be edited (UpdateCell has no type), so a new cell of
   * the new type takes its place: created at its index, then the old one deleted.
   */
  async changeType(view, type) {
    const index = this.order.indexOf(view.id);
    if (await this.call("notebook", "createCell", { type, code: view.code(), index }, "Changing the type")) {
      await this.call("notebook", "deleteCell", { cellId: view.id }, "Changing the type");
    }
  }

  /** The view `delta` places from `view` (or null at either end). */
  neighbour(view, delta) {
    return this.views.get(this.order[this.order.indexOf(view.id) + delta]) || null;
  }

  /** Shift+Enter: the next cell gets the focus; at the end, a new one is made. */
  focusAfter(view) {
    const next = this.neighbour(view, 1);
    if (next) next.focus();
    else this.addNear(view, true);
  }

  rename(name) {
    this.call("notebook", "renameNotebook", { name }, "Renaming");
  }
}

/** Moving a cell by dragging its header onto another cell. */
class CellDragging {
  constructor(session) {
    this.session = session;
    this.cellId = null;
  }

  attach(view, handle) {
    handle.addEventListener("dragstart", (event) => {
      this.cellId = view.id;
      event.dataTransfer.effectAllowed = "move";
      event.dataTransfer.setData("text/plain", view.id);
      event.dataTransfer.setDragImage(view.root, 16, 16);
    });
    handle.addEventListener("dragend", () => (this.cellId = null));
    view.root.addEventListener("dragover", (event) => {
      if (!this.cellId || this.cellId === view.id) return;
      event.preventDefault();
      view.root.classList.add("drop-target");
    });
    view.root.addEventListener("dragleave", () => view.root.classList.remove("drop-target"));
    view.root.addEventListener("drop", (event) => {
      view.root.classList.remove("drop-target");
      if (!this.cellId || this.cellId === view.id) return;
      event.preventDefault();
      const dragged = this.session.views.get(this.cellId);
      const index = this.session.order.indexOf(view.id);
      if (dragged && index >= 0) {
        this.session.call("notebook", "moveCell", { cellId: dragged.id, index }, "Moving");
      }
      this.cellId = null;
    });
  }
}
