"""Reading the three file formats ImportNotebook accepts into source cells.

A `SourceCell` is a cell as the file holds it, before anything is renamed:
Jupyter notebooks are read and validated with `nbformat`; percent scripts
are split at `# %%` markers (jupytext's format); marimo files are parsed
with `ast`, each `@app.cell` function's body becoming a cell.
"""

from __future__ import annotations

import ast
import json
import re
import textwrap
from dataclasses import dataclass, field
from typing import Any

from services.notebook.exporting.sql import sql_from_python
from services.notebook.models import CellType
from services.shared.errors import InvalidArgument


@dataclass(frozen=True)
class SourceCell:
    """One cell as read from a file."""

    type: CellType
    code: str
    result_name: str = ""
    # Jupyter outputs (nbformat 4 dicts) stored with the cell, if any.
    outputs: tuple[dict[str, Any], ...] = field(default=())
    execution_count: int | None = None


def malformed(detail: str) -> InvalidArgument:
    """The error for a file that cannot be read: it names the `content` field."""
    return InvalidArgument(
        f"invalid request: content: {detail}",
        field_violations=[("content", detail)],
    )


def read_ipynb(content: str) -> list[SourceCell]:
    """The cells of a Jupyter notebook (nbformat 4), validated."""
    import nbformat

    try:
        notebook = nbformat.reads(content, as_version=4)
        nbformat.validate(notebook)
    except nbformat.ValidationError as error:
        raise malformed(f"not a valid Jupyter notebook: {error.message}") from None
    except (json.JSONDecodeError, nbformat.reader.NotJSONError) as error:
        raise malformed(f"not a Jupyter notebook: {error}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise malformed(f"not a Jupyter notebook: {error!r}") from None
    except RecursionError:
        raise malformed("not a Jupyter notebook: nested too deeply") from None
    cells: list[SourceCell] = []
    for cell in notebook.cells:
        reflow = cell.get("metadata", {}).get("reflow", {})
        query = sql_from_python(cell.source) if reflow.get("type") == "sql" else None
        if query is not None:
            # A SQL cell Reflow exported as duckdb code: the cell it was.
            name = str(reflow.get("result_name", ""))
            cells.append(SourceCell(CellType.SQL, query, name))
        elif cell.cell_type == "code":
            cells.append(
                SourceCell(
                    CellType.PYTHON,
                    cell.source,
                    outputs=tuple(dict(o) for o in cell.get("outputs", ())),
                    execution_count=cell.get("execution_count"),
                )
            )
        else:
            # Raw cells have no Reflow equivalent; as markdown they stay visible.
            cells.append(SourceCell(CellType.MARKDOWN, cell.source))
    return cells


_PERCENT = re.compile(r"^# ?%%(?P<rest>.*)$")
_MARKDOWN_MARKER = re.compile(r"\[(markdown|md)\]")
# How Reflow's script export marks a SQL cell (exporting/script.py).
_SQL_MARKER = re.compile(r"\[sql\] result_name=(\"[^\"]*\")")


def read_percent(content: str) -> list[SourceCell]:
    """The cells of a `# %%` script; text before the first marker is a cell
    unless it is only jupytext's commented YAML header."""
    chunks: list[tuple[str, list[str]]] = [("", [])]
    for line in content.splitlines():
        marker = _PERCENT.match(line)
        if marker:
            chunks.append((marker.group("rest"), []))
        else:
            chunks[-1][1].append(line)
    cells: list[SourceCell] = []
    for index, (header, lines) in enumerate(chunks):
        text = "\n".join(lines).strip("\n")
        if index == 0 and (not text or _is_jupytext_header(lines)):
            continue
        sql = _SQL_MARKER.search(header)
        query = sql_from_python(text) if sql else None
        name = _json_text(sql.group(1)) if sql else None
        if query is not None and name is not None:
            cells.append(SourceCell(CellType.SQL, query, name))
        elif _MARKDOWN_MARKER.search(header):
            cells.append(SourceCell(CellType.MARKDOWN, _uncomment(lines)))
        else:
            cells.append(SourceCell(CellType.PYTHON, text))
    if not cells:
        raise malformed("no cells found (expected `# %%` markers)")
    return cells


def _json_text(value: str) -> str | None:
    try:
        text = json.loads(value)
    except json.JSONDecodeError:
        return None
    return text if isinstance(text, str) else None


def _is_jupytext_header(lines: list[str]) -> bool:
    return all(not line.strip() or line.startswith("#") for line in lines)


def _uncomment(lines: list[str]) -> str:
    kept = [re.sub(r"^# ?", "", line) for line in lines]
    return "\n".join(kept).strip("\n")


def read_marimo(content: str) -> list[SourceCell]:
    """The cells of a marimo notebook: `@app.cell` functions (and the
    `with app.setup:` block), `mo.md(...)` cells as markdown, `mo.sql(...)`
    cells as SQL."""
    try:
        tree = ast.parse(content)
    except SyntaxError as error:
        raise malformed(f"not a marimo notebook: syntax error: {error.msg}") from None
    lines = content.splitlines()
    cells: list[SourceCell] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _is_cell(node):
            cells.append(_marimo_cell(node, lines))
        elif isinstance(node, ast.With) and _is_setup(node):
            cells.append(SourceCell(CellType.PYTHON, _body_text(node.body, lines)))
        elif isinstance(node, ast.Expr) and _is_unparsable(node.value):
            assert isinstance(node.value, ast.Call)
            cells.append(SourceCell(CellType.PYTHON, _literal(node.value.args[0])))
    # md and sql cells become Reflow's own, so marimo's import is not needed
    # (the kernel has no marimo); an export adds it back.
    cells = [c for c in cells if c.code.strip() != "import marimo as mo"]
    if not cells and "marimo.App" not in content:
        raise malformed("not a marimo notebook: no `app = marimo.App()`")
    return cells


def _is_cell(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute) and target.attr == "cell":
            return True
    return False


def _is_setup(node: ast.With) -> bool:
    item = node.items[0].context_expr if node.items else None
    return isinstance(item, ast.Attribute) and item.attr == "setup"


def _is_unparsable(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "_unparsable_cell"
        and bool(node.args)
    )


def _marimo_cell(
    node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]
) -> SourceCell:
    body = list(node.body)
    if body and isinstance(body[-1], ast.Return):
        body.pop()
    if len(body) == 1 and isinstance(body[0], ast.Expr | ast.Assign):
        special = _special_cell(body[0])
        if special is not None:
            return special
    # Comments between the signature and the first statement are the cell's.
    header_end = max(
        [node.lineno] + [arg.end_lineno or arg.lineno for arg in node.args.args]
    )
    text = _body_text(body, lines, header_end) if body else ""
    return SourceCell(CellType.PYTHON, text)


def _special_cell(statement: ast.Expr | ast.Assign) -> SourceCell | None:
    call = statement.value
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
        return None
    if call.func.attr == "md" and isinstance(statement, ast.Expr) and call.args:
        if isinstance(call.args[0], ast.Constant | ast.JoinedStr):
            text = textwrap.dedent(_literal(call.args[0])).strip("\n")
            return SourceCell(CellType.MARKDOWN, text)
    if call.func.attr == "sql" and call.args:
        name = ""
        if isinstance(statement, ast.Assign) and isinstance(
            statement.targets[0], ast.Name
        ):
            name = statement.targets[0].id
            if name.startswith("_"):
                name = ""
        return SourceCell(CellType.SQL, _literal(call.args[0]).strip(), name)
    return None


def _literal(node: ast.expr) -> str:
    """The text of a string literal (plain or f-string) as written, so an
    f-string's `{name}` stays a placeholder."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts: list[str] = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            elif isinstance(value, ast.FormattedValue):
                parts.append("{" + ast.unparse(value.value) + "}")
        return "".join(parts)
    raise malformed("a marimo md/sql cell's argument is not a string literal")


def _body_text(body: list[ast.stmt], lines: list[str], start: int | None = None) -> str:
    first = body[0]
    if start is None:
        start = first.lineno - 1
        if isinstance(first, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            start = min([start] + [d.lineno - 1 for d in first.decorator_list])
    end = body[-1].end_lineno or body[-1].lineno
    return textwrap.dedent("\n".join(lines[start:end])).strip("\n")
