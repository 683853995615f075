/**
 * One cell's element: a header (count, type, SQL result name, status, its
 * parents and children, buttons), the CodeMirror editor, its analysis errors,
 * and its outputs.
 *
 * The editor's text is the user's: events replace it only while it holds what
 * the server last said (no unsaved edit to lose). A save carries the code the
 * edit started from: if someone else saved the cell since (seen in the events
 * already, or refused by the server with CELL_CHANGED), the cell shows both
 * versions to choose from.
 *
 * Keys, as in Jupyter and marimo. In the editor: Shift+Enter runs and moves
 * on (making a cell at the end), Ctrl/Cmd+Enter runs in place, Esc goes to
 * command mode, Ctrl/Cmd+S saves. In command mode (the cell selected, not its
 * editor): Enter edits, a/b add a cell above/below, dd deletes (with undo),
 * arrows (or j/k) move between cells, Shift+Enter and Ctrl/Cmd+Enter run.
 */

import { h } from "./dom.js";
import { createEditor } from "./editor.js";
import { renderError, renderMarkdown, renderOutput } from "./outputs.js";

const STATUS_PREFIX = "CELL_STATUS_";

const CELL_TYPES = [
  ["CELL_TYPE_PYTHON", "Python"],
  ["CELL_TYPE_SQL", "SQL"],
  ["CELL_TYPE_MARKDOWN", "Markdown"],
];

/** What the badge says for each status (the CSS class keeps the short name). */
const STATUS_LABELS = {
  idle: "not run",
  unspecified: "not run",
  blocked: "blocked",
};

export function statusName(status) {
  return (status || "CELL_STATUS_IDLE").slice(STATUS_PREFIX.length).toLowerCase();
}

export class CellView {
  constructor(session, cell) {
    this.session = session;
    this.id = cell.id;
    this.cell = cell;
    this.savedCode = cell.code || "";
    this.sentCode = null;
    this.result = null;
    this.status = cell.status;
    this.liveStatus = null;
    this.editing = false;
    this.pendingD = false;
    /** The saved code an unsaved edit started from (null while there is none). */
    this.base = null;
    this.build();
    this.setCell(cell);
    this.setResult(cell.result || null, cell.status);
  }

  get type() {
    return this.cell.type || "CELL_TYPE_PYTHON";
  }

  code() {
    return this.editor.code;
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
    this.upButton = button("↑", "Move up", () => this.session.move(this, -1), "up");
    this.downButton = button("↓", "Move down", () => this.session.move(this, 1), "down");
    this.disableButton = button("⊘", "Disable cell", () => this.session.setDisabled(this, !this.cell.disabled));
    this.collapseButton = button("▾", "Collapse output", () => this.toggleCollapsed(), "collapse");
    const header = h(
      "div",
      { class: "cell-header" },
      h("span", { class: "grip", title: "Drag to move", text: "⠿", draggable: "true" }),
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
      this.collapseButton,
      this.upButton,
      this.downButton,
      button("⤒", "Add a cell above (a)", () => this.session.addNear(this, false), "add-above"),
      button("⤓", "Add a cell below (b)", () => this.session.addNear(this, true), "add-below"),
      button("✕", "Delete cell (dd)", () => this.session.remove(this), "danger delete"),
    );
    this.editorBox = h("div", { class: "editor-box" });
    this.editor = createEditor({
      parent: this.editorBox,
      code: this.savedCode,
      type: this.type,
      label: "Cell code",
      keys: {
        "Shift-Enter": () => this.runFromEditor(true),
        "Mod-Enter": () => this.runFromEditor(false),
        Escape: () => this.select(),
        "Mod-s": () => (this.save(), true),
        ArrowUp: () => this.leaveEditor(-1),
        ArrowDown: () => this.leaveEditor(1),
      },
      onChange: () => this.onInput(),
      onBlur: () => this.onBlur(),
      names: this.type === "CELL_TYPE_MARKDOWN" ? null : () => this.session.definedNames(this),
      complete: this.type === "CELL_TYPE_PYTHON" ? (code, cursor) => this.session.complete(this, code, cursor) : null,
    });
    this.preview = h("div", { class: "markdown preview", title: "Double-click to edit" });
    this.preview.addEventListener("dblclick", () => this.startEditing());
    this.analysis = h("div", { class: "analysis-error", hidden: true });
    this.conflict = h("div", { class: "conflict", hidden: true });
    this.note = h("div", { class: "note", hidden: true });
    this.streams = h("div", { class: "streams" });
    this.outputs = h("div", { class: "outputs" });
    this.error = h("div", { class: "cell-error" });
    this.output = h("div", { class: "cell-output" }, this.note, this.streams, this.outputs, this.error);
    this.root = h(
      "article",
      { class: "cell", "data-cell-id": this.id, tabindex: "-1" },
      header,
      this.editorBox,
      this.preview,
      this.conflict,
      this.analysis,
      this.output,
    );
    this.root.addEventListener("keydown", (event) => this.onCommandKey(event));
    this.root.addEventListener("focusin", () => this.session.setSelected(this));
    this.session.dragging.attach(this, header);
  }

  destroy() {
    this.editor.destroy();
    this.root.remove();
  }

  /** Edit mode: the editor has the focus (a Markdown cell shows its source). */
  focus() {
    if (this.type === "CELL_TYPE_MARKDOWN") this.startEditing();
    else this.editor.focus(true);
  }

  /** Command mode: the cell itself has the focus. */
  select() {
    if (this.editing) {
      this.editing = false;
      this.showEditor();
    }
    this.root.focus();
    this.root.scrollIntoView({ block: "nearest" });
    return true;
  }

  setIndex(index, count) {
    this.upButton.disabled = index === 0;
    this.downButton.disabled = index === count - 1;
    this.showNote(); // it names the blocking cell by its position
    this.showDeps();
    this.showAnalysisError();
  }

  /** The cell as the server now has it (code, type, analysis, stored status). */
  setCell(cell) {
    const typeChanged = cell.type !== this.cell.type;
    // Our text follows the server's unless it holds an edit not yet saved.
    if (this.editor.code === this.savedCode) this.editor.code = cell.code || "";
    this.cell = cell;
    this.savedCode = cell.code || "";
    if (this.sentCode === this.savedCode) this.sentCode = null;
    if (this.editor.code === this.savedCode) this.clearConflict();
    this.showBase();
    this.status = cell.status;
    if (typeChanged) this.editor.setType(this.type);
    this.typeSelect.value = this.type;
    const sql = this.type === "CELL_TYPE_SQL";
    this.resultName.hidden = !sql;
    if (document.activeElement !== this.resultName) this.resultName.value = cell.resultName || "";
    this.root.classList.toggle("disabled", Boolean(cell.disabled));
    this.disableButton.textContent = cell.disabled ? "⊙" : "⊘";
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
    const label = (id) => this.session.cellLabel(id);
    if (this.cell.parentIds?.length) parts.push(`after ${this.cell.parentIds.map(label).join(", ")}`);
    if (this.cell.childIds?.length) parts.push(`before ${this.cell.childIds.map(label).join(", ")}`);
    this.deps.textContent = parts.join(" · ");
  }

  /** Every analysis error, with other cells named by their number. */
  showAnalysisError() {
    const problems = this.cell.analysisErrors || (this.cell.analysisError ? [this.cell.analysisError] : []);
    this.analysis.hidden = problems.length === 0;
    this.analysis.textContent = problems
      .map((problem) => this.session.humanize(problem.message || "This cell cannot run."))
      .join("\n");
  }

  /** Markdown shows its rendering unless being edited (or empty). */
  showEditor() {
    const markdown = this.type === "CELL_TYPE_MARKDOWN";
    const rendered = markdown && !this.editing && this.editor.code.trim() !== "";
    this.root.classList.toggle("markdown-cell", markdown);
    this.editorBox.hidden = rendered;
    this.preview.hidden = !rendered;
    if (rendered) this.preview.replaceChildren(...renderMarkdown(this.editor.code));
    this.runButton.hidden = markdown;
  }

  startEditing() {
    this.editing = true;
    this.showEditor();
    this.editor.focus(true);
  }

  toggleCollapsed() {
    const collapsed = this.root.classList.toggle("collapsed");
    this.collapseButton.textContent = collapsed ? "▸" : "▾";
    this.collapseButton.title = collapsed ? "Expand output" : "Collapse output";
  }

  // -- status and results --

  setLive(status) {
    this.liveStatus = status;
    this.showStatus();
  }

  showStatus() {
    const markdown = this.type === "CELL_TYPE_MARKDOWN";
    let name = statusName(this.liveStatus || this.status);
    // A cell that never ran is "not run", not stale: there is no old result.
    if (name === "stale" && !this.result) name = "idle";
    this.badge.hidden = markdown;
    this.badge.textContent = STATUS_LABELS[name] || name;
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
    this.outputs.append(renderOutput(output, this.outputContext()));
  }

  showResult() {
    const result = this.result || {};
    this.showStreams();
    const context = this.outputContext();
    this.outputs.replaceChildren(...(result.outputs || []).map((output) => renderOutput(output, context)));
    this.error.replaceChildren(...(result.error ? [renderError(result.error)] : []));
    this.showNote();
    const seconds = parseFloat(result.duration || "");
    this.duration.textContent = Number.isFinite(seconds) ? formatSeconds(seconds) : "";
  }

  /** What outputs may ask of the notebook: more rows of a table. */
  outputContext() {
    return { fetchRows: (tableId, offset) => this.session.tableRows(this, tableId, offset) };
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
    const label = this.session.cellLabel(blocker);
    if (label === "a cell") {
      this.note.textContent = `Not run: a cell it depends on ${why}.`;
      return;
    }
    const show = () => this.session.views.get(blocker)?.reveal();
    this.note.replaceChildren(
      `Not run: ${label}, which it depends on, ${why}. `,
      h("button", { type: "button", class: "link", text: "Show it", onclick: show }),
    );
  }

  reveal() {
    this.root.scrollIntoView({ block: "center", behavior: "smooth" });
    this.select();
  }

  // -- editing --

  /** Whether someone else saved the cell since our unsaved edit began. */
  showBase() {
    this.root.dataset.baseStale = String(this.base !== null && this.base !== this.savedCode);
  }

  onInput() {
    const dirty = this.editor.code !== this.savedCode;
    if (dirty && this.base === null) this.base = this.savedCode;
    if (!dirty) this.base = null;
    this.showBase();
    this.unsaved.hidden = !dirty;
    this.root.classList.toggle("dirty", dirty);
  }

  runFromEditor(moveOn) {
    this.session.runCell(this);
    if (this.editing) {
      this.editing = false;
      this.showEditor();
    }
    if (moveOn) this.session.focusAfter(this);
    return true;
  }

  /** An arrow on the editor's first or last line goes to the cell before or after. */
  leaveEditor(direction) {
    if (!this.editor.atEdge(direction)) return false;
    const other = this.session.neighbour(this, direction);
    if (!other) return false;
    other.focus();
    return true;
  }

  onBlur() {
    // Leaving an edited cell saves it, so nothing typed is lost.
    this.save();
    if (this.editing && !this.root.contains(document.activeElement)) {
      this.editing = false;
      this.showEditor();
    }
  }

  onCommandKey(event) {
    if (event.target !== this.root) return; // keys in the editor or a button are theirs
    const mod = event.ctrlKey || event.metaKey;
    const key = event.key;
    const handled = () => {
      event.preventDefault();
      event.stopPropagation();
    };
    if (key !== "d") this.pendingD = false;
    if (key === "Enter" && event.shiftKey) {
      handled();
      this.session.runCell(this);
      this.session.neighbour(this, 1)?.select() ?? this.session.addNear(this, true);
    } else if (key === "Enter" && mod) {
      handled();
      this.session.runCell(this);
    } else if (key === "Enter") {
      handled();
      this.focus();
    } else if (mod || event.altKey) {
      return;
    } else if (key === "a" || key === "b") {
      handled();
      this.session.addNear(this, key === "b");
    } else if (key === "d") {
      handled();
      if (this.pendingD) {
        this.pendingD = false;
        this.session.remove(this);
      } else {
        this.pendingD = true;
      }
    } else if (key === "ArrowUp" || key === "k" || key === "ArrowDown" || key === "j") {
      handled();
      this.session.neighbour(this, key === "ArrowUp" || key === "k" ? -1 : 1)?.select();
    }
  }

  /**
   * Send the code (and a SQL cell's result name) if either changed. If someone
   * else saved this cell after our edit began, the save is not sent: the page
   * shows both versions and the user chooses.
   */
  async save(force = false) {
    const code = this.editor.code;
    const sql = this.type === "CELL_TYPE_SQL";
    const name = this.resultName.value.trim();
    const nameChanged = sql && name !== (this.cell.resultName || "");
    // Code already sent (Shift+Enter, then the blur) is not sent twice.
    const unchanged = code === this.savedCode || code === this.sentCode;
    if (!force && unchanged && !nameChanged) return;
    if (!this.conflict.hidden) return; // the user is choosing between two versions
    if (!force && this.base !== null && this.base !== this.savedCode && code !== this.savedCode) {
      this.showConflict(this.cell);
      return;
    }
    this.sentCode = code;
    const expected = this.base ?? this.savedCode;
    const outcome = await this.session.saveCell(this, code, sql ? name : undefined, expected);
    if (outcome.conflict) this.showConflict(outcome.conflict);
    else if (!outcome.saved) this.sentCode = null;
  }

  /** Someone else saved this cell since our edit began: theirs or ours? */
  showConflict(theirs) {
    this.sentCode = null;
    const mine = this.editor.code;
    const theirCode = theirs.code || "";
    const keepMine = () => {
      this.clearConflict();
      this.base = theirCode;
      this.showBase();
      this.save(true);
    };
    const takeTheirs = () => {
      this.clearConflict();
      this.base = null;
      this.editor.code = theirCode;
      this.onInput();
    };
    this.conflict.replaceChildren(
      h("p", { text: "Someone else changed this cell while you were editing it. Which version do you keep?" }),
      h(
        "div",
        { class: "conflict-versions" },
        h("div", {}, h("h4", { text: "Theirs (saved)" }), h("pre", { class: "theirs", text: theirCode })),
        h("div", {}, h("h4", { text: "Yours" }), h("pre", { class: "mine", text: mine })),
      ),
      h(
        "div",
        { class: "row" },
        h("button", { type: "button", class: "take-theirs", text: "Use theirs", onclick: takeTheirs }),
        h("button", { type: "button", class: "primary keep-mine", text: "Keep mine", onclick: keepMine }),
      ),
    );
    this.conflict.hidden = false;
  }

  clearConflict() {
    this.conflict.hidden = true;
    this.conflict.replaceChildren();
  }

  onTypeChange() {
    const wanted = this.typeSelect.value;
    this.typeSelect.value = this.type; // the replacement cell's events will show it
    if (wanted !== this.type) this.session.changeType(this, wanted);
  }
}

function formatSeconds(seconds) {
  return seconds < 1 ? `${Math.round(seconds * 1000)} ms` : `${seconds.toFixed(2)} s`;
}
