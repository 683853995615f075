/**
 * The variables panel: the kernel's globals (ListVariables, answered by the
 * kernel even while a cell runs): name, type, shape or length, a short repr,
 * and the cell that defined it (by number, a link to the cell). Refreshed
 * when the panel opens and after every run.
 */

import { h } from "./dom.js";

export class VariablesPanel {
  constructor(session) {
    this.session = session;
    this.status = h("p", { class: "muted variables-status", text: "Loading…" });
    this.body = h("tbody");
    this.root = h(
      "div",
      { class: "variables" },
      this.status,
      h(
        "table",
        { class: "variables-table" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Name", "Type", "Shape", "Value", "Cell"].map((text) => h("th", { scope: "col", text })),
          ),
        ),
        this.body,
      ),
    );
    this.asked = 0;
  }

  /** Ask the kernel again; an older answer arriving late is dropped. */
  async refresh() {
    const asked = ++this.asked;
    const reply = await this.session.call("execution", "listVariables", {}, "Listing the variables");
    if (asked !== this.asked || !reply) return;
    const variables = reply.variables || [];
    this.status.textContent = !reply.kernelRunning
      ? "The kernel has not started: run a cell to define variables."
      : variables.length
        ? ""
        : "No variables defined.";
    this.body.replaceChildren(...variables.map((variable) => this.row(variable)));
  }

  row({ name, type, shape, repr, cellId }) {
    const cell = cellId
      ? h("button", {
          type: "button",
          class: "link",
          text: this.session.cellLabel(cellId),
          onclick: () => this.session.views.get(cellId)?.select(),
        })
      : "";
    return h(
      "tr",
      { "data-name": name },
      h("th", { scope: "row", class: "mono", text: name }),
      h("td", { text: type || "" }),
      h("td", { class: "mono", text: shape || "" }),
      h("td", { class: "mono repr", text: repr || "" }),
      h("td", {}, cell),
    );
  }
}
