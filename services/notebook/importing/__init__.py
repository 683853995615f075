"""Importing notebooks from Jupyter, percent scripts and marimo.

`import_file` reads the file (`sources.py`), turns IPython magics into Reflow
cells or comments (`magics.py`), takes out imports repeated from earlier
cells (`imports.py`) and renames what the notebook redefines from cell to
cell (`renaming.py`), so that the notebook runs reactively as it ran top to
bottom. Each change is a note; stored Jupyter outputs are kept
(`outputs.py`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from services.notebook.importing.imports import drop_repeated_imports
from services.notebook.importing.magics import convert_magics
from services.notebook.importing.outputs import result_from_outputs
from services.notebook.importing.renaming import rename_redefinitions
from services.notebook.importing.sources import (
    read_ipynb,
    read_marimo,
    read_percent,
)
from services.notebook.models import CellType


class ImportFormat(enum.Enum):
    """The kinds of file a notebook is imported from."""

    IPYNB = "ipynb"
    PY_PERCENT = "py_percent"
    MARIMO = "marimo"


@dataclass(frozen=True)
class ImportedCell:
    """A cell ready to store, with the notes about what the importer changed."""

    type: CellType
    code: str
    result_name: str
    result: dict[str, Any] | None
    notes: tuple[str, ...]


_READERS = {
    ImportFormat.IPYNB: read_ipynb,
    ImportFormat.PY_PERCENT: read_percent,
    ImportFormat.MARIMO: read_marimo,
}


def import_file(file_format: ImportFormat, content: str) -> list[ImportedCell]:
    """The cells of a notebook file, changed to run reactively."""
    cells = _READERS[file_format](content)
    converted = [convert_magics(cell) for cell in cells]
    unrepeated = drop_repeated_imports([c.cell for c in converted])
    renamed = rename_redefinitions([c.cell for c in unrepeated])
    imported = []
    for magic, unrepeat, rename in zip(converted, unrepeated, renamed, strict=True):
        cell = rename.cell
        # Markdown cells keep their text; trailing blank lines are Jupyter's.
        code = cell.code if cell.type is CellType.MARKDOWN else cell.code.rstrip()
        imported.append(
            ImportedCell(
                cell.type,
                code,
                cell.result_name,
                result_from_outputs(cell.outputs, cell.execution_count),
                magic.notes + unrepeat.notes + rename.notes,
            )
        )
    return imported


__all__ = ["ImportFormat", "ImportedCell", "import_file"]
