/**
 * A cell's code editor: CodeMirror 6 with Python or SQL, line numbers,
 * bracket matching, search (Ctrl/Cmd+F), history and completion: the
 * language's (keywords, builtins, names in the cell), the kernel's when
 * `complete` is given (jedi against the live variables: attributes, modules,
 * arguments), and the names the notebook's other cells define (`names`),
 * which are all there is before the kernel has started.
 *
 * The notebook's own keys (run, leave the editor, save) come first, so they
 * win over CodeMirror's defaults.
 */

import { python } from "@codemirror/lang-python";
import { sql } from "@codemirror/lang-sql";
import { Compartment, EditorState, Prec } from "@codemirror/state";
import { EditorView, keymap, placeholder } from "@codemirror/view";
import { basicSetup } from "codemirror";

/** The page's style nonce: CodeMirror's <style> elements carry it (app.py's CSP). */
const STYLE_NONCE = document.querySelector('meta[name="style-nonce"]')?.content || "";

const LANGUAGES = {
  CELL_TYPE_PYTHON: () => python(),
  CELL_TYPE_SQL: () => sql(),
  CELL_TYPE_MARKDOWN: () => [],
};

/**
 * An editor in `parent`. `keys` maps CodeMirror key names ("Shift-Enter") to
 * functions that return true when they handled the key; `onChange` gets the
 * new text; `names()` lists the notebook's names to complete ({label, detail});
 * `complete(code, cursorOffset)` asks the kernel (a CompleteResponse's JSON).
 */
export function createEditor({ parent, code, type, keys, onChange, onBlur, names, complete, label }) {
  const language = new Compartment();
  const extensions = [
    Prec.highest(keymap.of(Object.entries(keys).map(([key, run]) => ({ key, run: () => run() })))),
    EditorView.cspNonce.of(STYLE_NONCE),
    basicSetup,
    language.of(LANGUAGES[type]?.() ?? []),
    EditorView.lineWrapping,
    EditorView.contentAttributes.of({ "aria-label": label, spellcheck: "false", autocapitalize: "off" }),
    placeholder(type === "CELL_TYPE_MARKDOWN" ? "Markdown" : type === "CELL_TYPE_SQL" ? "SELECT …" : "Python"),
    EditorView.updateListener.of((update) => {
      if (update.docChanged) onChange(update.state.doc.toString());
      if (update.focusChanged && !update.view.hasFocus) onBlur();
    }),
  ];
  if (names) {
    // One source per editor: the completion state tracks sources by identity.
    const data = [{ autocomplete: completions(names, complete) }];
    extensions.push(EditorState.languageData.of(() => data));
  }
  const view = new EditorView({ parent, state: EditorState.create({ doc: code, extensions }) });
  return {
    view,
    get code() {
      return view.state.doc.toString();
    },
    set code(text) {
      if (text === view.state.doc.toString()) return;
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
    },
    setType(newType) {
      view.dispatch({ effects: language.reconfigure(LANGUAGES[newType]?.() ?? []) });
    },
    focus(atEnd = false) {
      view.focus();
      if (atEnd) view.dispatch({ selection: { anchor: view.state.doc.length } });
    },
    get focused() {
      return view.hasFocus;
    },
    /** Whether the cursor is on the first (-1) or last (1) line. */
    atEdge(direction) {
      const { head } = view.state.selection.main;
      const line = view.state.doc.lineAt(head).number;
      return direction < 0 ? line === 1 : line === view.state.doc.lines;
    },
    destroy() {
      view.destroy();
    },
  };
}

/** jedi's kinds as CodeMirror's completion types (its icons). */
const KINDS = {
  module: "namespace",
  class: "class",
  instance: "variable",
  function: "function",
  param: "variable",
  keyword: "keyword",
  property: "property",
  statement: "variable",
  path: "text",
};

/**
 * A completion source: the kernel's completions at the cursor, and the names
 * the notebook's cells define that the kernel did not offer (all of them when
 * no kernel runs yet). After a dot only the kernel knows what to offer.
 */
function completions(names, complete) {
  return async (context) => {
    const word = context.matchBefore(/[A-Za-z_]\w*/) || { from: context.pos, to: context.pos, text: "" };
    const afterDot = word.from > 0 && context.state.sliceDoc(word.from - 1, word.from) === ".";
    if (!word.text && !afterDot && !context.explicit) return null;
    const kernel = complete ? await kernelCompletions(context, complete) : null;
    if (context.aborted) return null;
    const options = kernel?.options || [];
    const from = kernel?.from ?? word.from;
    if (!afterDot) {
      const offered = new Set(options.map((option) => option.label));
      for (const name of names()) if (!offered.has(name.label)) options.push({ ...name, type: "variable" });
    }
    return options.length ? { from, options, validFor: /^\w*$/ } : null;
  };
}

async function kernelCompletions(context, complete) {
  const code = context.state.doc.toString();
  // The server counts code points; CodeMirror counts UTF-16 units.
  const before = Array.from(code.slice(0, context.pos));
  try {
    const reply = await complete(code, before.length);
    if (!reply?.kernelRunning) return null;
    const prefix = before.slice(before.length - (reply.prefixLength || 0)).join("");
    const options = (reply.completions || []).map(({ text, kind }) => ({
      label: text,
      type: KINDS[kind] || "variable",
      detail: kind,
      boost: 1,
    }));
    return { from: context.pos - prefix.length, options };
  } catch {
    return null; // completion is a convenience: a failed call offers nothing more
  }
}
