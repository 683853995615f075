"""Notebooks as Jupyter files (nbformat 4), with their last outputs.

Cells come in dependency order, so Jupyter's top-to-bottom run works; SQL
cells become the equivalent `duckdb` code, and each cell's metadata keeps
what Reflow needs to import the file back into the same cells.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from services.notebook.exporting.sql import sql_as_python
from services.notebook.models import CellType

if TYPE_CHECKING:
    from collections.abc import Mapping

    from services.notebook.models import Cell

REFLOW_KEY = "reflow"


def notebook_to_ipynb(cells: list[Cell]) -> str:
    """The cells as an nbformat 4 notebook (JSON text), validated."""
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    notebook.metadata["language_info"] = {"name": "python"}
    for cell in cells:
        notebook.cells.append(_cell(cell))
    nbformat.validate(notebook)
    text: str = nbformat.writes(notebook)
    return text


def _cell(cell: Cell) -> Any:
    import nbformat

    if cell.type is CellType.MARKDOWN:
        return nbformat.v4.new_markdown_cell(cell.code)
    metadata: dict[str, Any] = {}
    code = cell.code
    if cell.type is CellType.SQL:
        metadata[REFLOW_KEY] = {"type": "sql", "result_name": cell.result_name}
        code = sql_as_python(cell.code, cell.result_name)
    outputs, count = jupyter_outputs(cell.result)
    return nbformat.v4.new_code_cell(
        code, metadata=metadata, outputs=outputs, execution_count=count
    )


def jupyter_outputs(
    result: Mapping[str, Any] | None,
) -> tuple[list[Any], int | None]:
    """A stored result as Jupyter outputs and execution count."""
    import nbformat

    if not result:
        return [], None
    outputs = []
    for name in ("stdout", "stderr"):
        if result.get(name):
            outputs.append(
                nbformat.v4.new_output("stream", name=name, text=result[name])
            )
    for output in result.get("outputs", []):
        # Reflow shows Series and DataFrames as tables: say so, since Jupyter's
        # own text of the same object differs.
        metadata = {REFLOW_KEY: {"table": True}} if "table" in output else {}
        outputs.append(
            nbformat.v4.new_output(
                "display_data", data=_data(output), metadata=metadata
            )
        )
    error = result.get("error")
    if error:
        outputs.append(
            nbformat.v4.new_output(
                "error",
                ename=error.get("type", ""),
                evalue=error.get("message", ""),
                traceback=str(error.get("traceback", "")).split("\n"),
            )
        )
    count = int(result["executionCount"]) if result.get("executionCount") else None
    return outputs, count


def _data(output: Mapping[str, Any]) -> dict[str, Any]:
    mime = output.get("mimeType", "text/plain")
    data: dict[str, Any] = dict(output.get("alternatives", {}))
    if "json" in output:
        data[mime] = output["json"]
    elif "binary" in output:
        data[mime] = output["binary"]
    elif "table" in output:
        data.setdefault("text/html", table_html(output["table"]))
    else:
        data[mime] = output.get("text", "")
    data.setdefault("text/plain", _plain(mime, data))
    return data


def _plain(mime: str, data: Mapping[str, Any]) -> str:
    # Jupyter front ends fall back to text/plain; say what the output is.
    return f"<{mime}>"


def table_html(table: Mapping[str, Any]) -> str:
    """A stored table preview as an HTML table."""
    columns = [c.get("name", "") for c in table.get("columns", [])]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in table.get("rows", [])
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
