"""Notebooks as plain Python scripts that `python script.py` runs.

Cells come in dependency order, each after a `# %%` marker (jupytext's
percent format, so editors show cells and the file imports back); markdown
is commented out and SQL cells are the equivalent `duckdb` code. A cell's
last expression is printed only in a notebook, so the script prints nothing
it did not print there.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from services.notebook.exporting.sql import sql_as_python
from services.notebook.models import CellType

if TYPE_CHECKING:
    from services.notebook.models import Cell


def notebook_to_script(name: str, cells: list[Cell]) -> str:
    """The cells as a percent-format Python script."""
    parts = [f"# {name}: exported from Reflow, cells in dependency order"]
    for cell in cells:
        if cell.type is CellType.MARKDOWN:
            text = "\n".join(f"# {line}".rstrip() for line in cell.code.split("\n"))
            parts.append(f"# %% [markdown]\n{text}")
        elif cell.type is CellType.SQL:
            header = f"# %% [sql] result_name={json.dumps(cell.result_name)}"
            parts.append(f"{header}\n{sql_as_python(cell.code, cell.result_name)}")
        else:
            parts.append(f"# %%\n{cell.code}")
    return "\n\n".join(parts) + "\n"
