/**
 * A cell's code editor: CodeMirror 6 with Python or SQL, line numbers,
 * bracket matching, search (Ctrl/Cmd+F), history and completion: the
 * language's (keywords, builtins, names in the cell) and, when `names` is
 * given, the names the notebook's other cells define.
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
 * new text; `names()` lists the notebook's names to complete ({label, detail}).
 */
export function createEditor({ parent, code, type, keys, onChange, onBlur, names, label }) {
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
    const data = [{ autocomplete: notebookNames(names) }];
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

/** A completion source offering the names the notebook's cells define. */
function notebookNames(names) {
  return (context) => {
    const word = context.matchBefore(/[A-Za-z_]\w*/);
    if (!word || (word.from === word.to && !context.explicit)) return null;
    // Not after a dot: attributes are the object's, not the notebook's.
    if (word.from > 0 && context.state.sliceDoc(word.from - 1, word.from) === ".") return null;
    return { from: word.from, options: names().map((name) => ({ ...name, type: "variable" })), validFor: /^\w*$/ };
  };
}
