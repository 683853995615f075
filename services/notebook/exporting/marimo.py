"""Notebooks as marimo files: one `@app.cell` function per cell.

marimo's format (checked against marimo's own files): `import marimo`,
`app = marimo.App()`, each cell a function whose parameters are the names it
reads and whose `return (...)` tuple is the names it defines, then
`app.run()` under `__main__`. Markdown cells are `mo.md(...)` and SQL cells
`mo.sql(f"...")`, both needing a cell that imports marimo as `mo`.
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

from services.notebook.models import CellType

if TYPE_CHECKING:
    from services.notebook.graphs import CellView

GENERATED_WITH = "0.19.7"


def notebook_to_marimo(views: tuple[CellView, ...]) -> str:
    """The cells as a marimo notebook file."""
    uses_mo = any(v.cell.type is not CellType.PYTHON for v in views)
    defines_mo = any("mo" in v.writes for v in views)
    parts = [
        f'import marimo\n\n__generated_with = "{GENERATED_WITH}"\napp = marimo.App()'
    ]
    if uses_mo and not defines_mo:
        parts.append(_function(("import marimo as mo",), (), ("mo",)))
    for view in views:
        parts.append(_cell(view, uses_mo and not defines_mo))
    parts.append('if __name__ == "__main__":\n    app.run()')
    return "\n\n\n".join(parts) + "\n"


def _cell(view: CellView, adds_mo: bool) -> str:
    cell = view.cell
    reads = tuple(view.reads)
    if cell.type is CellType.MARKDOWN:
        text = cell.code.replace('"""', '\\"\\"\\"')
        body = f'mo.md(r"""\n{text}\n""")'
        return _function((body,), ("mo",), (), hide_code=True)
    if cell.type is CellType.SQL:
        query = cell.code.replace('"""', '\\"\\"\\"')
        target = cell.result_name or "_df"
        indented = textwrap.indent(query, "    ")
        body = f'{target} = mo.sql(\n    f"""\n{indented}\n    """\n)'
        needed = tuple(sorted({*reads, "mo"})) if adds_mo else reads
        return _function((body,), needed, tuple(view.writes))
    return _function((cell.code,), reads, tuple(view.writes))


def _function(
    body: tuple[str, ...],
    reads: tuple[str, ...],
    writes: tuple[str, ...],
    hide_code: bool = False,
) -> str:
    decorator = "@app.cell(hide_code=True)" if hide_code else "@app.cell"
    text = textwrap.indent("\n".join(body), "    ") if any(body) else "    pass"
    if len(writes) == 1:
        returned = f"    return ({writes[0]},)"
    elif writes:
        returned = f"    return ({', '.join(writes)})"
    else:
        returned = "    return"
    return f"{decorator}\ndef _({', '.join(reads)}):\n{text}\n{returned}"
