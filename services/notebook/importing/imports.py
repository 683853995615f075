"""Imports a Jupyter notebook repeats: taken out of the later cells.

Notebooks often import a module again further down (`import numpy as np`
in a cell that is otherwise new). Reflow lets one cell define `np`; since a
repeated import binds the very same module, the later statement is commented
out and the cell reads the earlier binding. An import that binds a name to
something else is a real redefinition and is left to the renaming.
"""

from __future__ import annotations

import ast
from dataclasses import replace
from typing import TYPE_CHECKING

from services.notebook.importing.renaming import Renamed, analyse
from services.notebook.models import CellType

if TYPE_CHECKING:
    from collections.abc import Sequence

    from services.notebook.importing.sources import SourceCell

Binding = tuple[str, str, str]  # (module, imported name, level)


def drop_repeated_imports(cells: list[SourceCell]) -> list[Renamed]:
    """Every cell with imports an earlier cell already made commented out."""
    imported: dict[str, Binding] = {}
    result: list[Renamed] = []
    for cell in cells:
        if cell.type is not CellType.PYTHON or analyse(cell).error:
            result.append(Renamed(cell, ()))
            continue
        tree = ast.parse(cell.code)
        repeated = [
            statement
            for statement in tree.body
            if isinstance(statement, ast.Import | ast.ImportFrom)
            and all(imported.get(b) == s for b, s in _bindings(statement))
        ]
        result.append(_comment_out(cell, repeated))
        # Whatever this cell binds now shadows earlier imports of the name.
        for name in analyse(cell).writes:
            imported.pop(name, None)
        for statement in tree.body:
            if isinstance(statement, ast.Import | ast.ImportFrom):
                imported.update(_bindings(statement))
    return result


def _bindings(statement: ast.Import | ast.ImportFrom) -> list[tuple[str, Binding]]:
    if isinstance(statement, ast.Import):
        return [
            (
                a.asname or a.name.split(".")[0],
                (a.name if a.asname else a.name.split(".")[0], "", "0"),
            )
            for a in statement.names
        ]
    module = statement.module or ""
    return [
        (a.asname or a.name, (module, a.name, str(statement.level)))
        for a in statement.names
    ]


def _comment_out(
    cell: SourceCell, statements: Sequence[ast.Import | ast.ImportFrom]
) -> Renamed:
    if not statements:
        return Renamed(cell, ())
    lines = cell.code.split("\n")
    notes = []
    for statement in statements:
        end = statement.end_lineno or statement.lineno
        text = " ".join(line.strip() for line in lines[statement.lineno - 1 : end])
        notes.append(f"commented out `{text}`: an earlier cell already imports it")
        for number in range(statement.lineno - 1, end):
            lines[number] = "# " + lines[number]
    return Renamed(replace(cell, code="\n".join(lines)), tuple(notes))
