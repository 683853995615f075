/** DOM helpers: elements built without parsing markup, the views, the toast. */

const TOAST_MS = 6_000;

/**
 * A new element. `props` are attributes (set with setAttribute, so never parsed
 * as markup), except `class`, `text` (textContent) and `on<event>` listeners.
 * String children become text nodes.
 */
export function h(tag, props = {}, ...children) {
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

export const byId = (id) => document.getElementById(id);

/** Show one of the three views (sign-in, list, notebook). */
export function showView(name) {
  for (const view of ["sign-in", "list", "notebook"]) {
    byId(`${view}-view`).hidden = view !== name;
  }
  byId("sign-out").hidden = name === "sign-in";
}

let toastTimer = 0;

/**
 * A short message at the top of the page; errors stay a little longer.
 * `action` ({label, onclick}) adds a button, such as "Undo".
 */
export function notify(message, kind = "info", action = null) {
  const toast = byId("toast");
  const button =
    action &&
    h("button", {
      type: "button",
      class: "link toast-action",
      text: action.label,
      onclick: () => {
        toast.hidden = true;
        action.onclick();
      },
    });
  toast.replaceChildren(message, ...(button ? [" ", button] : []));
  toast.className = `toast toast-${kind}`;
  toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (toast.hidden = true), kind === "error" ? TOAST_MS * 2 : TOAST_MS);
}
