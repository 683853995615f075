"""Exporting notebooks: Jupyter, plain Python, marimo and static HTML.

Jupyter files and scripts list cells in dependency order, so that a
top-to-bottom run works; marimo (which orders cells itself) and the HTML
page keep the notebook's order.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.notebook.exporting.ipynb import notebook_to_ipynb
from services.notebook.exporting.marimo import notebook_to_marimo
from services.notebook.exporting.page import notebook_to_html
from services.notebook.exporting.script import notebook_to_script

if TYPE_CHECKING:
    from services.notebook.changes import Snapshot
    from services.notebook.models import CellId


class ExportFormat(enum.Enum):
    """The kinds of file a notebook is exported to."""

    IPYNB = "ipynb"
    PYTHON = "python"
    MARIMO = "marimo"
    HTML = "html"


@dataclass(frozen=True)
class Exported:
    """An exported file."""

    content: str
    media_type: str
    file_name: str


_FILES = {
    ExportFormat.IPYNB: ("application/x-ipynb+json", ".ipynb"),
    ExportFormat.PYTHON: ("text/x-python", ".py"),
    ExportFormat.MARIMO: ("text/x-python", ".py"),
    ExportFormat.HTML: ("text/html", ".html"),
}


def export_notebook(
    snapshot: Snapshot, order: list[CellId], file_format: ExportFormat
) -> Exported:
    """The notebook as a file of the given format."""
    name = snapshot.notebook.name
    by_id = {cell.id: cell for cell in snapshot.notebook.cells}
    ordered = [by_id[cell_id] for cell_id in order]
    if file_format is ExportFormat.IPYNB:
        content = notebook_to_ipynb(ordered)
    elif file_format is ExportFormat.PYTHON:
        content = notebook_to_script(name, ordered)
    elif file_format is ExportFormat.MARIMO:
        content = notebook_to_marimo(snapshot.cells)
    else:
        content = notebook_to_html(name, list(snapshot.notebook.cells))
    media_type, extension = _FILES[file_format]
    return Exported(content, media_type, _file_name(name) + extension)


def _file_name(name: str) -> str:
    # A name safe in a Content-Disposition header and on every file system.
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return cleaned or "notebook"
