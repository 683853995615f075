/**
 * Reflow's web page: sign in, list notebooks, and work in one notebook live.
 *
 * Bundled by esbuild (`make web`) from web/src/ into what the gateway serves.
 * It calls the public services with gRPC-Web through Envoy (client.js); the
 * notebook page (notebook.js) also keeps the gateway's WebSocket open for the
 * live feed of every run and for presence (see the README, "The web page").
 *
 * Safety: a notebook's code and everything a kernel produced is untrusted.
 * Nothing here parses data as HTML: text goes in as text nodes, images as
 * data: URLs in <img>, HTML outputs and charts into sandboxed frames. The
 * page's Content-Security-Policy backs this up.
 */

import { Code, auth, rpc, storeToken } from "./client.js";
import { byId, h, notify, showView } from "./dom.js";
import { app, closeNotebook, openNotebook } from "./notebook.js";
import { setupTheme } from "./theme.js";
import { exportNotebook, wireImport } from "./transfer.js";

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
    app.user = null;
    params.delete("token");
    history.replaceState(null, "", `${location.pathname}#${params}`);
  }
  const notebookId = params.get("notebook");
  if (app.notebook && app.notebook.id !== notebookId) closeNotebook();
  if (!auth.token) return showSignIn();
  if (!app.user && !(await whoAmI())) return;
  if (notebookId) openNotebook(notebookId);
  else showList();
}

// -- sign-in -------------------------------------------------------------------

/** Who the token names (GetCurrentUser); false, with the sign-in shown, if nobody. */
async function whoAmI() {
  try {
    const me = await rpc("gateway", "getCurrentUser");
    app.user = me.user;
    byId("user").textContent = me.user;
    return true;
  } catch (error) {
    if (error.code !== Code.Unauthenticated) showSignIn(`Cannot reach Reflow: ${error.message}`);
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
  app.user = null;
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
  let page;
  try {
    page = await rpc("notebook", "listNotebooks", { pageSize: 100, pageToken });
  } catch (error) {
    if (error.code !== Code.Unauthenticated) notify(`Cannot list notebooks: ${error.message}`, "error");
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
      await rpc("notebook", "deleteNotebook", { notebookId: notebook.id });
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
    const created = await rpc("notebook", "createNotebook", body);
    byId("create-name").value = "";
    location.hash = `notebook=${encodeURIComponent(created.notebook.id)}`;
  } catch (error) {
    if (error.code !== Code.Unauthenticated) notify(`Cannot create the notebook: ${error.message}`, "error");
  }
}

// -- wiring ---------------------------------------------------------------------

function wire() {
  auth.onRefused = (message) => signOut(`Your token was refused: ${message}`);
  byId("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    storeToken(byId("token-input").value.trim());
    app.user = null;
    route();
  });
  byId("sign-out").addEventListener("click", () => signOut());
  byId("create-form").addEventListener("submit", createNotebook);
  byId("back").addEventListener("click", () => closeNotebook());
  byId("run-all").addEventListener("click", () => app.notebook?.runAll());
  byId("run-stale").addEventListener("click", () => app.notebook?.runStale());
  byId("lazy").addEventListener("change", (event) => app.notebook?.setRunMode(event.target.checked));
  byId("interrupt").addEventListener("click", () => app.notebook?.interrupt());
  byId("restart").addEventListener("click", () => app.notebook?.restart());
  for (const button of document.querySelectorAll("[data-panel]")) {
    button.addEventListener("click", () => app.notebook?.togglePanel(button.dataset.panel));
  }
  byId("panel-close").addEventListener("click", () => app.notebook?.togglePanel(null));
  const exportFormat = byId("export-format");
  exportFormat.addEventListener("change", () => {
    if (app.notebook && exportFormat.value) exportNotebook(app.notebook, exportFormat.value);
    exportFormat.value = "";
  });
  wireImport();
  for (const button of document.querySelectorAll("[data-add]")) {
    button.addEventListener("click", () => app.notebook?.addCellOfType(button.dataset.add));
  }
  const name = byId("nb-name");
  name.addEventListener("change", () => name.value.trim() && app.notebook?.rename(name.value.trim()));
  name.addEventListener("keydown", (event) => event.key === "Enter" && name.blur());
  window.addEventListener("hashchange", route);
  window.addEventListener("beforeunload", (event) => {
    const dirty = app.notebook && [...app.notebook.views.values()].some((v) => v.code() !== v.savedCode);
    if (dirty) event.preventDefault();
  });
}

async function start() {
  setupTheme();
  wire();
  await loadConfig();
  await route();
}

start();
