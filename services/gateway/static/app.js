/**
 * Reflow's web UI: sign in, list notebooks, and work in one notebook live.
 *
 * One ES module with no build step and no dependencies: what the browser runs
 * is this file. The notebook page speaks the gateway's WebSocket protocol
 * (services/gateway/bridge.py): it sends commands and applies *events*; it
 * never edits its own copy of the notebook after a command. Every change, ours
 * or a collaborator's, comes back as a notebook or execution event, so two
 * browsers on one notebook show the same thing.
 *
 * Safety: a notebook's code and everything a kernel produced is untrusted.
 * Nothing here parses data as HTML: text goes in as text nodes, images as
 * data: URLs in <img>, HTML outputs into sandboxed srcdoc frames (no scripts,
 * an opaque origin). The page's Content-Security-Policy backs this up.
 */

const TOKEN_KEY = "reflow.token";
const TABLE_MIME = "application/vnd.reflow.table+json";
const CHART_MIME = /^application\/vnd\.(vega(lite)?\.v\d+|plotly\.v1)[+.]json$/;
const RASTER_MIMES = new Set(["image/png", "image/jpeg", "image/gif"]);
const CELL_TYPES = [
  ["CELL_TYPE_PYTHON", "Python"],
  ["CELL_TYPE_SQL", "SQL"],
  ["CELL_TYPE_MARKDOWN", "Markdown"],
];
const RECONNECT_MAX_MS = 10_000;
const TOAST_MS = 6_000;

const app = {
  token: localStorage.getItem(TOKEN_KEY),
  user: null,
  devTokenCommand: "",
  /** The open NotebookSession, if the notebook page is shown. */
  notebook: null,
};

// -- DOM helpers ---------------------------------------------------------------

/**
 * A new element. `props` are attributes (set with setAttribute, so never parsed
 * as markup), except `class`, `text` (textContent) and `on<event>` listeners.
 * String children become text nodes.
 */
function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children.flat().filter((child) => child != null && child !== false));
  return node;
}

const byId = (id) => document.getElementById(id);

/** Show one of the three views (sign-in, list, notebook). */
function showView(name) {
  for (const view of ["sign-in", "list", "notebook"]) {
    byId(`${view}-view`).hidden = view !== name;
  }
  byId("sign-out").hidden = name === "sign-in";
}

let toastTimer = 0;

/** A short message at the top of the page; errors stay a little longer. */
function notify(message, kind = "info") {
  const toast = byId("toast");
  toast.textContent = message;
  toast.className = `toast toast-${kind}`;
  toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (toast.hidden = true), kind === "error" ? TOAST_MS * 2 : TOAST_MS);
}

// -- REST (through Envoy's transcoder) ------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Call the REST API as the signed-in user; canonical proto JSON both ways. */
async function api(method, path, body) {
  const headers = { authorization: `Bearer ${app.token}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = { message: text };
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data.message || `HTTP ${response.status}`);
    // A refused token will not get better by retrying: back to sign-in.
    if (response.status === 401) signOut(`Your token was refused: ${error.message}`);
    throw error;
  }
  return data;
}

// -- routing: #notebook=ID, or the list; #token=... signs in ------------------

function hashParams() {
  return new URLSearchParams(location.hash.replace(/^#/, ""));
}

async function route() {
  const params = hashParams();
  if (params.has("token")) {
    // A token in the fragment (never sent to a server) signs in once; it is
    // taken out of the address bar so it does not linger in history.
    storeToken(params.get("token"));
    params.delete("token");
    history.replaceState(null, "", `${location.pathname}#${params}`);
  }
  const notebookId = params.get("notebook");
  if (app.notebook && app.notebook.id !== notebookId) closeNotebook();
  if (!app.token) return showSignIn();
  if (!app.user && !(await whoAmI())) return;
  if (notebookId) openNotebook(notebookId);
  else showList();
}

// -- sign-in -------------------------------------------------------------------

function storeToken(token) {
  app.token = token || null;
  app.user = null;
  if (app.token) localStorage.setItem(TOKEN_KEY, app.token);
  else localStorage.removeItem(TOKEN_KEY);
}

/** Who the token names (GetCurrentUser); false, with the sign-in shown, if nobody. */
async function whoAmI() {
  try {
    const me = await api("GET", "/api/v1/me");
    app.user = me.user;
    byId("user").textContent = me.user;
    return true;
  } catch (error) {
    if (error.status !== 401) showSignIn(`Cannot reach Reflow: ${error.message}`);
    return false;
  }
}

function showSignIn(message = "") {
  showView("sign-in");
  byId("user").textContent = "";
  const problem = byId("sign-in-error");
  problem.textContent = message;
  problem.hidden = !message;
  byId("dev-command").textContent = app.devTokenCommand;
  byId("dev-hint").hidden = !app.devTokenCommand;
  byId("token-input").value = "";
}

function signOut(message = "") {
  closeNotebook();
  storeToken(null);
  showSignIn(message);
}

/** Whether the gateway issues dev tokens: the sign-in page says how to get one. */
async function loadConfig() {
  try {
    const response = await fetch("/ui/config");
    const config = await response.json();
    app.devTokenCommand = config.devMode ? config.devTokenCommand : "";
  } catch {
    app.devTokenCommand = "";
  }
}

// -- notebook list ---------------------------------------------------------------

async function showList() {
  showView("list");
  byId("notebook-list").replaceChildren();
  await loadNotebooks("");
  byId("create-name").focus();
}

async function loadNotebooks(pageToken) {
  const query = new URLSearchParams({ page_size: "100" });
  if (pageToken) query.set("page_token", pageToken);
  let page;
  try {
    page = await api("GET", `/api/v1/notebooks?${query}`);
  } catch (error) {
    if (error.status !== 401) notify(`Cannot list notebooks: ${error.message}`, "error");
    return;
  }
  const list = byId("notebook-list");
  list.append(...(page.notebooks || []).map(notebookItem));
  byId("list-empty").hidden = list.childElementCount > 0;
  const more = byId("list-more");
  more.hidden = !page.nextPageToken;
  more.onclick = () => loadNotebooks(page.nextPageToken);
}

function notebookItem(notebook) {
  const cells = Number(notebook.cellCount || 0);
  const updated = notebook.updateTime ? new Date(notebook.updateTime).toLocaleString() : "";
  const remove = async () => {
    if (!confirm(`Delete "${notebook.name}" and everything stored with it?`)) return;
    try {
      await api("DELETE", `/api/v1/notebooks/${encodeURIComponent(notebook.id)}`);
      item.remove();
      byId("list-empty").hidden = byId("notebook-list").childElementCount > 0;
    } catch (error) {
      notify(`Cannot delete: ${error.message}`, "error");
    }
  };
  const item = h(
    "li",
    { class: "notebook-item" },
    h("a", { href: `#notebook=${encodeURIComponent(notebook.id)}`, text: notebook.name || "Untitled" }),
    h("span", { class: "muted", text: `${cells} cell${cells === 1 ? "" : "s"} · ${updated}` }),
    h("button", { type: "button", class: "link danger", text: "Delete", onclick: remove }),
  );
  return item;
}

async function createNotebook(event) {
  event.preventDefault();
  const body = { name: byId("create-name").value.trim() || "Untitled" };
  if (byId("create-demo").checked) body.template = "NOTEBOOK_TEMPLATE_DEMO";
  try {
    const created = await api("POST", "/api/v1/notebooks", body);
    byId("create-name").value = "";
    location.hash = `notebook=${encodeURIComponent(created.notebook.id)}`;
  } catch (error) {
    if (error.status !== 401) notify(`Cannot create the notebook: ${error.message}`, "error");
  }
}

// -- one notebook over the WebSocket ------------------------------------------------

function openNotebook(id) {
  showView("notebook");
  if (app.notebook?.id === id) return;
  app.notebook = new NotebookSession(id);
  app.notebook.connect();
}

function closeNotebook() {
  app.notebook?.close();
  app.notebook = null;
}

/**
 * A notebook's live state: its cells in order (each a CellView), the socket,
 * and the replies still awaited. It owns #cells while the notebook is open.
 */
class NotebookSession {
  constructor(id) {
    this.id = id;
    this.order = [];
    this.views = new Map();
    this.replies = new Map();
    this.nextRequestId = 1;
    this.retries = 0;
    this.closed = false;
    this.socket = null;
    this.focusOnCreate = null;
    this.activeRuns = new Set();
    this.kernel = { state: "unknown", reason: "" };
    byId("cells").replaceChildren();
    byId("nb-name").value = "";
    this.showKernel();
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}/ws/notebooks/${encodeURIComponent(this.id)}`;
    const socket = new WebSocket(url);
    this.socket = socket;
    this.setConnection("connecting");
    // The browser cannot put headers on the handshake: the token is the first message.
    socket.onopen = () => socket.send(JSON.stringify({ type: "auth", token: app.token }));
    socket.onmessage = (message) => this.receive(JSON.parse(message.data));
    socket.onclose = (closed) => this.closedWith(closed.code, closed.reason);
  }

  close() {
    this.closed = true;
    this.socket?.close(1000, "left the notebook");
    this.dropReplies("left the notebook");
  }

  /** Replies that will never come (their socket is gone) are given up on. */
  dropReplies(why) {
    for (const { reject } of this.replies.values()) reject(new Error(why));
    this.replies.clear();
  }

  /** Why the socket closed decides what to do: sign in, go back, or reconnect. */
  closedWith(code, reason) {
    this.dropReplies(`the connection closed (${code})`);
    this.activeRuns.clear();
    if (this.closed) return;
    if (code === 4401) return signOut(`The notebook refused your token: ${reason}`);
    if (code === 4404 || code === 4403 || code === 1000) {
      notify(code === 1000 ? "The notebook was deleted." : `Cannot open the notebook: ${reason}`, "error");
      this.closed = true;
      location.hash = "";
      return;
    }
    // Anything else (a restart, a slow network, 1013 try again later): retry
    // with a growing delay; the snapshot on reconnect brings us up to date.
    const delay = Math.min(RECONNECT_MAX_MS, 500 * 2 ** this.retries++);
    this.setConnection(`reconnecting in ${Math.round(delay / 1000)} s`);
    setTimeout(() => !this.closed && this.connect(), delay);
  }

  setConnection(text) {
    const conn = byId("conn");
    conn.textContent = text;
    conn.className = `conn conn-${text === "live" ? "live" : "down"}`;
  }

  /** Send a command; resolves with the reply's result, rejects with its error. */
  send(type, fields = {}) {
    const id = this.nextRequestId++;
    if (this.socket?.readyState !== WebSocket.OPEN) {
      notify("Not connected; try again in a moment.", "error");
      return Promise.reject(new Error("not connected"));
    }
    this.socket.send(JSON.stringify({ type, id, ...fields }));
    return new Promise((resolve, reject) => this.replies.set(id, { resolve, reject })).catch(
      (error) => {
        if (error.code) notify(`${type} failed: ${error.message || error.code}`, "error");
        throw error;
      },
    );
  }

  receive(message) {
    // A socket being closed may still deliver; the page is another notebook's now.
    if (this.closed) return;
    if (message.type === "notebook_event") this.applyNotebookEvent(message.event);
    else if (message.type === "execution_event") this.applyExecutionEvent(message.event);
    else if (message.type === "reply") this.settle(message);
    else if (message.type === "error") notify(`Notebook stream failed: ${message.error.message}`, "error");
  }

  settle(reply) {
    const waiting = this.replies.get(reply.id);
    if (!waiting) return;
    this.replies.delete(reply.id);
    if (reply.ok) waiting.resolve(reply.result);
    else waiting.reject(Object.assign(new Error(reply.error.message), reply.error));
  }

  // -- notebook events (WatchNotebookResponse) --

  applyNotebookEvent(event) {
    if (event.snapshot) this.applySnapshot(event.snapshot);
    else if (event.cellCreated) this.addCell(event.cellCreated.cell, event.cellCreated.index ?? 0);
    else if (event.cellUpdated) this.views.get(event.cellUpdated.cell.id)?.setCell(event.cellUpdated.cell);
    else if (event.cellMoved) this.moveCell(event.cellMoved.cellId, event.cellMoved.index ?? 0);
    else if (event.cellDeleted) this.removeCell(event.cellDeleted.cellId);
    else if (event.notebookChanged) this.setSettings(event.notebookChanged.notebook);
    else if (event.cellResultRecorded) {
      const { cellId, result } = event.cellResultRecorded;
      this.views.get(cellId)?.setResult(result);
    }
    this.layout();
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
    this.views.get(id)?.root.remove();
    this.views.delete(id);
    this.order = this.order.filter((other) => other !== id);
  }

  setSettings(notebook) {
    this.setName(notebook.name);
    byId("lazy").checked = notebook.runMode === "RUN_MODE_LAZY";
  }

  setRunMode(lazy) {
    const runMode = lazy ? "RUN_MODE_LAZY" : "RUN_MODE_AUTOMATIC";
    api("PUT", `/api/v1/notebooks/${encodeURIComponent(this.id)}/run_mode`, { runMode }).catch((error) => {
      if (error.status !== 401) notify(`Cannot change the run mode: ${error.message}`, "error");
    });
  }

  setDisabled(view, disabled) {
    const path = `/api/v1/notebooks/${encodeURIComponent(this.id)}/cells/${encodeURIComponent(view.id)}/disabled`;
    api("PUT", path, { disabled }).catch((error) => {
      if (error.status !== 401) notify(`Cannot ${disabled ? "disable" : "enable"} the cell: ${error.message}`, "error");
    });
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
      if (!view.root.isConnected) requestAnimationFrame(() => view.fit());
      const expected = previous ? previous.nextSibling : container.firstChild;
      if (expected !== view.root) container.insertBefore(view.root, expected);
      previous = view.root;
    });
    // Moving a node blurs it; a cell moved with its buttons keeps the focus.
    if (focused instanceof HTMLElement && focused !== document.activeElement) focused.focus();
    byId("cells").classList.toggle("empty", this.order.length === 0);
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
    for (const view of this.views.values()) {
      if (view.liveStatus === "CELL_STATUS_QUEUED") view.setLive(null);
    }
  }

  setKernel({ state, reason }) {
    const name = (state || "KERNEL_STATE_UNKNOWN").replace("KERNEL_STATE_", "").toLowerCase();
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
      const reply = await api("GET", `/api/v1/notebooks/${encodeURIComponent(this.id)}/kernel`);
      this.setKernel(reply.kernel || {});
    } catch (error) {
      if (error.status === 404) this.setKernel({ state: "not started" });
    }
  }

  // -- commands --

  addCellOfType(cellType, index) {
    const fields = { cellType, code: "" };
    if (index !== undefined) fields.index = index;
    this.send("create_cell", fields).then(
      (result) => {
        const view = this.views.get(result.cell.id);
        if (view) view.focus();
        else this.focusOnCreate = result.cell.id;
      },
      () => {},
    );
  }

  /** Save (if changed), then run the cell and its dependents. */
  runCell(view) {
    view.save();
    if (view.type === "CELL_TYPE_MARKDOWN") return;
    this.send("run_cells", { cellIds: [view.id] }).catch(() => {});
  }

  runStale() {
    for (const view of this.views.values()) view.save();
    this.send("run_cells", { cellIds: [] }).catch(() => {});
  }

  async interrupt() {
    const reply = await this.send("interrupt").catch(() => null);
    if (reply && !reply.interrupted) notify("Nothing was running.");
  }

  restart() {
    if (!confirm("Restart the kernel? Its variables are lost; cells and results stay.")) return;
    this.send("restart").then(() => notify("Kernel restarted."), () => {});
  }

  move(view, delta) {
    const index = this.order.indexOf(view.id) + delta;
    if (index < 0 || index >= this.order.length) return;
    this.send("move_cell", { cellId: view.id, index }).catch(() => {});
  }

  remove(view) {
    // There is no undo: a cell with code in it is only deleted when confirmed.
    if (view.editor.value.trim() && !confirm("Delete this cell?")) return;
    this.send("delete_cell", { cellId: view.id }).catch(() => {});
  }

  /**
   * A cell's type cannot be edited (UpdateCell has no type), so a new cell of
   * the new type takes its place: created at its index, then the old one deleted
   * (the ordered command lane keeps the two in this order).
   */
  changeType(view, cellType) {
    const index = this.order.indexOf(view.id);
    const fields = { cellType, code: view.editor.value, index };
    this.focusOnCreate = null;
    this.send("create_cell", fields).catch(() => {});
    this.send("delete_cell", { cellId: view.id }).catch(() => {});
  }

  focusAfter(view) {
    const next = this.views.get(this.order[this.order.indexOf(view.id) + 1]);
    next?.focus();
  }

  rename(name) {
    api("PUT", `/api/v1/notebooks/${encodeURIComponent(this.id)}/name`, { name }).catch((error) => {
      if (error.status !== 401) notify(`Cannot rename: ${error.message}`, "error");
    });
  }
}

// -- one cell -------------------------------------------------------------------

const STATUS_PREFIX = "CELL_STATUS_";

function statusName(status) {
  return (status || "CELL_STATUS_IDLE").slice(STATUS_PREFIX.length).toLowerCase();
}

/**
 * A cell's element: a header (count, type, SQL result name, status, reads and
 * writes, buttons), the editor, its analysis error, and its outputs. The
 * editor's text is the user's: events replace it only while it holds what the
 * server last said (no unsaved edit to lose).
 */
class CellView {
  constructor(session, cell) {
    this.session = session;
    this.id = cell.id;
    this.cell = cell;
    this.savedCode = "";
    this.sentCode = null;
    this.result = null;
    this.status = cell.status;
    this.liveStatus = null;
    this.editing = false;
    this.build();
    this.setCell(cell);
    this.setResult(cell.result || null, cell.status);
  }

  get type() {
    return this.cell.type || "CELL_TYPE_PYTHON";
  }

  build() {
    this.count = h("span", { class: "count" });
    this.typeSelect = h(
      "select",
      { class: "type", "aria-label": "Cell type", onchange: () => this.onTypeChange() },
      CELL_TYPES.map(([value, label]) => h("option", { value, text: label })),
    );
    this.resultName = h("input", {
      class: "result-name",
      type: "text",
      placeholder: "result name",
      "aria-label": "SQL result name",
      spellcheck: "false",
      onchange: () => this.save(true),
    });
    this.badge = h("span", { class: "badge" });
    this.deps = h("span", { class: "deps" });
    this.duration = h("span", { class: "duration muted" });
    this.unsaved = h("span", { class: "unsaved", text: "unsaved", hidden: true });
    const button = (text, title, onclick, extra = "") =>
      h("button", { type: "button", class: `icon ${extra}`, text, title, "aria-label": title, onclick });
    this.runButton = button("▶", "Run (Shift+Enter)", () => this.session.runCell(this), "run");
    this.upButton = button("↑", "Move up", () => this.session.move(this, -1));
    this.downButton = button("↓", "Move down", () => this.session.move(this, 1));
    this.disableButton = button("⏸", "Disable cell", () =>
      this.session.setDisabled(this, !this.cell.disabled),
    );
    const header = h(
      "div",
      { class: "cell-header" },
      this.count,
      this.typeSelect,
      this.resultName,
      this.badge,
      this.unsaved,
      this.deps,
      h("span", { class: "spacer" }),
      this.duration,
      this.runButton,
      this.disableButton,
      this.upButton,
      this.downButton,
      button("+", "Add a Python cell below", () => this.addBelow()),
      button("✕", "Delete cell", () => this.session.remove(this), "danger"),
    );
    this.editor = h("textarea", {
      class: "editor",
      spellcheck: "false",
      autocomplete: "off",
      autocapitalize: "off",
      rows: 1,
      "aria-label": "Cell code",
    });
    this.editor.addEventListener("keydown", (event) => this.onKey(event));
    this.editor.addEventListener("input", () => this.onInput());
    this.editor.addEventListener("blur", () => this.onBlur());
    this.preview = h("div", { class: "markdown preview", title: "Double-click to edit" });
    this.preview.addEventListener("dblclick", () => this.startEditing());
    this.analysis = h("div", { class: "analysis-error", hidden: true });
    this.note = h("div", { class: "note", hidden: true });
    this.streams = h("div", { class: "streams" });
    this.outputs = h("div", { class: "outputs" });
    this.error = h("div", { class: "cell-error" });
    this.root = h(
      "article",
      { class: "cell", "data-cell-id": this.id },
      header,
      this.editor,
      this.preview,
      this.analysis,
      h("div", { class: "cell-output" }, this.note, this.streams, this.outputs, this.error),
    );
  }

  focus() {
    if (this.type === "CELL_TYPE_MARKDOWN") this.startEditing();
    else this.editor.focus();
  }

  setIndex(index, count) {
    this.upButton.disabled = index === 0;
    this.downButton.disabled = index === count - 1;
    this.showNote(); // it names the blocking cell by its position
  }

  /** The cell as the server now has it (code, type, analysis, stored status). */
  setCell(cell) {
    // Our text follows the server's unless it holds an edit not yet saved.
    if (this.editor.value === this.savedCode) this.editor.value = cell.code || "";
    this.cell = cell;
    this.savedCode = cell.code || "";
    if (this.sentCode === this.savedCode) this.sentCode = null;
    this.status = cell.status;
    this.typeSelect.value = this.type;
    const sql = this.type === "CELL_TYPE_SQL";
    this.resultName.hidden = !sql;
    if (document.activeElement !== this.resultName) this.resultName.value = cell.resultName || "";
    this.root.classList.toggle("disabled", Boolean(cell.disabled));
    this.disableButton.textContent = cell.disabled ? "⏵" : "⏸";
    this.disableButton.title = cell.disabled ? "Enable cell" : "Disable cell";
    this.showDeps();
    this.showAnalysisError();
    this.showEditor();
    this.onInput();
    this.showStatus();
  }

  showDeps() {
    const parts = [];
    if (this.cell.reads?.length) parts.push(`reads ${this.cell.reads.join(", ")}`);
    if (this.cell.writes?.length) parts.push(`writes ${this.cell.writes.join(", ")}`);
    const position = (id) => {
      const index = this.session.order.indexOf(id);
      return index < 0 ? "a cell" : `cell ${index + 1}`;
    };
    if (this.cell.parentIds?.length) parts.push(`after ${this.cell.parentIds.map(position).join(", ")}`);
    this.deps.textContent = parts.join(" · ");
  }

  showAnalysisError() {
    const problems = this.cell.analysisErrors || (this.cell.analysisError ? [this.cell.analysisError] : []);
    this.analysis.hidden = problems.length === 0;
    this.analysis.textContent = problems.map((p) => p.message || "This cell cannot run.").join("\n");
  }

  /** Markdown shows its rendering unless being edited (or empty). */
  showEditor() {
    const markdown = this.type === "CELL_TYPE_MARKDOWN";
    const rendered = markdown && !this.editing && this.editor.value.trim() !== "";
    this.root.classList.toggle("markdown-cell", markdown);
    this.editor.hidden = rendered;
    this.preview.hidden = !rendered;
    if (!rendered) this.fit();
    if (rendered) this.preview.replaceChildren(...renderMarkdown(this.editor.value));
    this.runButton.hidden = markdown;
  }

  startEditing() {
    this.editing = true;
    this.showEditor();
    this.editor.focus();
  }

  // -- status and results --

  setLive(status) {
    this.liveStatus = status;
    this.showStatus();
  }

  showStatus() {
    const markdown = this.type === "CELL_TYPE_MARKDOWN";
    const name = statusName(this.liveStatus || this.status);
    this.badge.hidden = markdown;
    this.badge.textContent = name;
    this.badge.className = `badge status-${name}`;
    this.root.dataset.status = markdown ? "" : name;
    const count = this.result?.executionCount;
    this.count.textContent = markdown ? "" : `[${count && count !== "0" ? count : " "}]`;
  }

  /** A run began here: the old result goes, the new one streams in. */
  startRun(executionCount) {
    this.result = { executionCount, stdout: "", stderr: "", outputs: [] };
    this.setLive("CELL_STATUS_RUNNING");
    this.showResult();
  }

  /** A finished (or stored) result; `status` is the stored one when given. */
  setResult(result, status) {
    this.result = result;
    this.status = status || result?.status || this.status;
    this.liveStatus = null;
    this.showStatus();
    this.showResult();
  }

  appendStream({ stream, text, truncated }) {
    if (!this.result) this.result = { stdout: "", stderr: "", outputs: [] };
    const key = stream === "STREAM_STDERR" ? "stderr" : "stdout";
    this.result[key] = (this.result[key] || "") + (text || "");
    if (truncated) this.result.outputTruncated = true;
    // Appending to the open <pre> keeps a flood of chunks cheap.
    const pre = this.streams.querySelector(`pre.${key}`);
    if (pre && !truncated) pre.append(text || "");
    else this.showStreams();
  }

  appendOutput(output) {
    if (!this.result) this.result = { stdout: "", stderr: "", outputs: [] };
    this.result.outputs = [...(this.result.outputs || []), output];
    this.outputs.append(renderOutput(output));
  }

  showResult() {
    const result = this.result || {};
    this.showStreams();
    this.outputs.replaceChildren(...(result.outputs || []).map(renderOutput));
    this.error.replaceChildren(...(result.error ? [renderError(result.error)] : []));
    this.showNote();
    const seconds = parseFloat(result.duration || "");
    this.duration.textContent = Number.isFinite(seconds) ? formatSeconds(seconds) : "";
  }

  showStreams() {
    const result = this.result || {};
    const blocks = [];
    if (result.stdout) blocks.push(h("pre", { class: "stdout", text: result.stdout }));
    if (result.stderr) blocks.push(h("pre", { class: "stderr", text: result.stderr }));
    if (result.outputTruncated) blocks.push(h("p", { class: "muted", text: "output truncated" }));
    this.streams.replaceChildren(...blocks);
  }

  /** Why a cell did not run: the upstream cell that failed, one click away. */
  showNote() {
    const disabler = this.result?.disabledByCellId;
    const disabled = statusName(this.result?.status) === "disabled";
    const blocker = this.result?.blockedByCellId || disabler;
    this.note.hidden = !blocker && !disabled;
    if (!blocker) {
      if (disabled) this.note.textContent = "Not run: the cell is disabled.";
      return;
    }
    const why = disabler ? "is disabled" : "failed";
    const index = this.session.order.indexOf(blocker);
    if (index < 0) {
      this.note.textContent = `Not run: a cell it depends on ${why}.`;
      return;
    }
    const show = () => this.session.views.get(blocker)?.reveal();
    this.note.replaceChildren(
      `Not run: cell ${index + 1}, which it depends on, ${why}. `,
      h("button", { type: "button", class: "link", text: "Show it", onclick: show }),
    );
  }

  reveal() {
    this.root.scrollIntoView({ block: "center", behavior: "smooth" });
    this.focus();
  }

  // -- editing --

  /**
   * Grow the editor with its code, so the notebook scrolls and the editor does
   * not. Rows are a first guess (the only one before the element is shown);
   * the measured height then makes room for a horizontal scrollbar too.
   */
  fit() {
    const editor = this.editor;
    editor.rows = Math.max(1, editor.value.split("\n").length);
    if (!editor.isConnected || editor.hidden) return;
    editor.style.height = "auto";
    editor.style.height = `${editor.scrollHeight + editor.offsetHeight - editor.clientHeight}px`;
  }

  onInput() {
    this.fit();
    const dirty = this.editor.value !== this.savedCode;
    this.unsaved.hidden = !dirty;
    this.root.classList.toggle("dirty", dirty);
  }

  onKey(event) {
    const mod = event.ctrlKey || event.metaKey;
    if (event.key === "Enter" && (event.shiftKey || mod)) {
      event.preventDefault();
      this.session.runCell(this);
      this.editing = false;
      this.showEditor();
      if (event.shiftKey) this.session.focusAfter(this);
    } else if (mod && event.key.toLowerCase() === "s") {
      event.preventDefault();
      this.save();
    } else if (event.key === "Tab" && !event.shiftKey && !mod) {
      // In code, Tab indents; Escape then Tab leaves the editor.
      event.preventDefault();
      this.editor.setRangeText("    ", this.editor.selectionStart, this.editor.selectionEnd, "end");
      this.onInput();
    } else if (event.key === "Escape") {
      this.editor.blur();
    }
  }

  onBlur() {
    // Leaving an edited cell saves it, so nothing typed is lost.
    this.save();
    if (this.editing) {
      this.editing = false;
      this.showEditor();
    }
  }

  /** Send the code (and a SQL cell's result name) if either changed. */
  save(force = false) {
    const code = this.editor.value;
    const sql = this.type === "CELL_TYPE_SQL";
    const nameChanged = sql && this.resultName.value.trim() !== (this.cell.resultName || "");
    // Code already sent (Shift+Enter, then the blur) is not sent twice.
    const unchanged = code === this.savedCode || code === this.sentCode;
    if (!force && unchanged && !nameChanged) return;
    this.sentCode = code;
    const fields = { cellId: this.id, code };
    if (sql && this.resultName.value.trim()) fields.resultName = this.resultName.value.trim();
    this.session.send("update_cell", fields).catch(() => {});
  }

  onTypeChange() {
    const wanted = this.typeSelect.value;
    this.typeSelect.value = this.type; // the replacement cell's events will show it
    if (wanted !== this.type) this.session.changeType(this, wanted);
  }

  addBelow() {
    const index = this.session.order.indexOf(this.id) + 1;
    this.session.addCellOfType("CELL_TYPE_PYTHON", index);
  }
}

function formatSeconds(seconds) {
  return seconds < 1 ? `${Math.round(seconds * 1000)} ms` : `${seconds.toFixed(2)} s`;
}

// -- outputs, by MIME type -------------------------------------------------------

/** One output as an element; unknown types fall back to their text. */
function renderOutput(output) {
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

function renderError(error) {
  const text = error.traceback || `${error.type || "Error"}: ${error.message || ""}`;
  return h("pre", { class: "traceback", text });
}

// -- a very small Markdown renderer (DOM nodes only) ------------------------------

/**
 * Headings, paragraphs, lists, block quotes, fenced code, and inline code,
 * bold, italics and http(s) links. Everything is built with text nodes, so no
 * input can produce markup.
 */
function renderMarkdown(source) {
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

// -- wiring ---------------------------------------------------------------------

function wire() {
  byId("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    storeToken(byId("token-input").value.trim());
    route();
  });
  byId("sign-out").addEventListener("click", () => signOut());
  byId("create-form").addEventListener("submit", createNotebook);
  byId("back").addEventListener("click", () => closeNotebook());
  byId("run-stale").addEventListener("click", () => app.notebook?.runStale());
  byId("lazy").addEventListener("change", (event) => app.notebook?.setRunMode(event.target.checked));
  byId("interrupt").addEventListener("click", () => app.notebook?.interrupt());
  byId("restart").addEventListener("click", () => app.notebook?.restart());
  for (const button of document.querySelectorAll("[data-add]")) {
    button.addEventListener("click", () => app.notebook?.addCellOfType(button.dataset.add));
  }
  const name = byId("nb-name");
  name.addEventListener("change", () => name.value.trim() && app.notebook?.rename(name.value.trim()));
  name.addEventListener("keydown", (event) => event.key === "Enter" && name.blur());
  window.addEventListener("hashchange", route);
  window.addEventListener("beforeunload", (event) => {
    const dirty = app.notebook && [...app.notebook.views.values()].some((v) => v.editor.value !== v.savedCode);
    if (dirty) event.preventDefault();
  });
}

async function start() {
  wire();
  await loadConfig();
  await route();
}

start();
