"""Exported notebooks run elsewhere with the results they had in Reflow.

A corpus notebook is imported and run on a real kernel, then exported: the
Jupyter file passes `nbformat.validate` and, executed by nbclient on an
ipykernel, prints and shows what Reflow recorded; the script runs with
`python`.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any

import nbformat
import pytest
from nbclient import NotebookClient

from reflow.notebook.v1 import notebook_pb2
from tests.notebook.corpus import CORPUS, as_ipynb

if TYPE_CHECKING:
    from pathlib import Path

    from tests.execution.conftest import Stack

EXPORTED = ["self_rebinding", "loops", "redefinitions", "imports"]


async def imported_and_run(stack: Stack, name: str) -> str:
    """A corpus notebook imported and run; returns its id."""
    reply = await stack.notebooks.ImportNotebook(
        notebook_pb2.ImportNotebookRequest(
            name=name,
            format=notebook_pb2.IMPORT_FORMAT_IPYNB,
            content=as_ipynb(CORPUS[name]),
        ),
        metadata=stack.metadata(),
    )
    code = [
        c.id for c in reply.notebook.cells if c.type != notebook_pb2.CELL_TYPE_MARKDOWN
    ]
    await stack.run(reply.notebook.id, *code)
    return reply.notebook.id


async def exported(
    stack: Stack, notebook_id: str, file_format: notebook_pb2.ExportFormat.ValueType
) -> str:
    reply = await stack.notebooks.ExportNotebook(
        notebook_pb2.ExportNotebookRequest(notebook_id=notebook_id, format=file_format),
        metadata=stack.metadata(),
    )
    return reply.content


def seen(cell: Any) -> tuple[str, list[str]]:
    """What a code cell printed and the plain text of what it showed.

    Tables and figures are left out: Reflow renders them its own way (a
    table preview, an image), so their text differs from Jupyter's.
    """
    printed = "".join(o["text"] for o in cell.outputs if o["output_type"] == "stream")
    shown = [
        o["data"]["text/plain"]
        for o in cell.outputs
        if o["output_type"] in ("execute_result", "display_data")
        and not o["data"]["text/plain"].startswith("<")
    ]
    return printed, shown


def has_table(cell: Any) -> bool:
    return any(
        o.get("metadata", {}).get("reflow", {}).get("table") for o in cell.outputs
    )


@pytest.mark.parametrize("name", EXPORTED)
async def test_exported_ipynb_reexecutes_with_the_same_results(
    stack: Stack, name: str
) -> None:
    notebook_id = await imported_and_run(stack, name)
    document = nbformat.reads(
        await exported(stack, notebook_id, notebook_pb2.EXPORT_FORMAT_IPYNB), 4
    )
    nbformat.validate(document)
    code = [c for c in document.cells if c.cell_type == "code"]
    compared = [not has_table(c) for c in code]
    recorded = [seen(c) for c, shown in zip(code, compared, strict=True) if shown]

    rerun = nbformat.reads(nbformat.writes(document), 4)
    await NotebookClient(rerun, timeout=60, kernel_name="python3").async_execute()

    again = [c for c in rerun.cells if c.cell_type == "code"]
    assert [seen(c) for c, s in zip(again, compared, strict=True) if s] == recorded
    assert sum(compared) >= len(code) - 1


@pytest.mark.parametrize("name", EXPORTED)
async def test_exported_script_runs_with_python(
    stack: Stack, name: str, tmp_path: Path
) -> None:
    notebook_id = await imported_and_run(stack, name)
    script = tmp_path / "script.py"
    script.write_text(
        await exported(stack, notebook_id, notebook_pb2.EXPORT_FORMAT_PYTHON)
    )

    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)

    assert process.returncode == 0, stderr.decode()
