"""Imported Jupyter notebooks run in Reflow as they ran top to bottom.

For every notebook of the corpus (tests/notebook/corpus.py), the code cells
that succeed after ImportNotebook, run through the execution service on a
real kernel, are exactly those that succeed when the original cells run top
to bottom in one Python process (IPython's shell, as Jupyter runs them).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pytest

from reflow.notebook.v1 import notebook_pb2
from tests.execution.conftest import finished
from tests.notebook.corpus import CORPUS, DATA_FILES, Notebook, as_ipynb

if TYPE_CHECKING:
    from tests.execution.conftest import Stack

REPOSITORY: Final = Path(__file__).parents[2]


async def top_to_bottom(
    notebook: Notebook, files: dict[str, bytes], directory: Path
) -> list[bool]:
    """Which code cells succeed run in order in one fresh Python process,
    with the notebook's data files in its current directory."""
    sources = [source for kind, source in notebook if kind == "code"]
    for path, content in files.items():
        (directory / path).parent.mkdir(parents=True, exist_ok=True)
        (directory / path).write_bytes(content)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.notebook.top_to_bottom",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=directory,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
    )
    stdout, _ = await asyncio.wait_for(
        process.communicate(json.dumps(sources).encode()), timeout=60
    )
    assert process.returncode == 0
    # Shell escapes (`!echo`) write to the same stdout: the verdict is last.
    verdict: list[bool] = json.loads(stdout.decode().splitlines()[-1])
    return verdict


async def in_reflow(
    stack: Stack, notebook: Notebook, files: dict[str, bytes]
) -> list[bool]:
    """Which code cells succeed after import (with the data files), all run
    at once."""
    reply = await stack.notebooks.ImportNotebook(
        notebook_pb2.ImportNotebookRequest(
            name="corpus",
            format=notebook_pb2.IMPORT_FORMAT_IPYNB,
            content=as_ipynb(notebook),
            files=[
                notebook_pb2.ImportedFile(path=path, content=content)
                for path, content in files.items()
            ],
        ),
        metadata=stack.metadata(),
    )
    code_cells = [
        cell.id
        for cell in reply.notebook.cells
        if cell.type != notebook_pb2.CELL_TYPE_MARKDOWN
    ]
    results = finished(await stack.run(reply.notebook.id, *code_cells))
    success = notebook_pb2.CELL_STATUS_SUCCESS
    return [results[cell_id].status == success for cell_id in code_cells]


@pytest.mark.parametrize("name", sorted(CORPUS))
async def test_imported_notebook_succeeds_where_top_to_bottom_does(
    stack: Stack, name: str, tmp_path: Path
) -> None:
    files = DATA_FILES.get(name, {})
    expected = await top_to_bottom(CORPUS[name], files, tmp_path)

    succeeded = await in_reflow(stack, CORPUS[name], files)

    assert succeeded == expected


async def test_a_notebook_reads_and_writes_its_data_files_after_import(
    stack: Stack, tmp_path: Path
) -> None:
    files = DATA_FILES["data_files"]
    # Every cell but the one reading a missing file, both ways: the files
    # really were there.
    expected = [True] * 7 + [False]

    assert await top_to_bottom(CORPUS["data_files"], files, tmp_path) == expected
    assert await in_reflow(stack, CORPUS["data_files"], files) == expected
