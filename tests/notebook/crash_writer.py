"""Write to a LocalFileStore until killed, acknowledging every write on stdout.

Usage: python -m tests.notebook.crash_writer DATA_DIR

Each completed create or put prints one line, "<notebook id> <revision>", and
flushes it, so whatever the parent has read was acknowledged before the kill.
The test in test_store_local.py kills this process with SIGKILL and checks
that no acknowledged revision was lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from pathlib import Path

from services.notebook.models import Cell, CellId, CellType, Notebook
from services.notebook.store.local import LocalFileStore
from tests.notebook.samples import make_notebook

# A bound, so that a writer whose test died before killing it stops by itself.
GIVE_UP_AFTER_S = 60.0
# Large enough that a kill often lands in the middle of writing a file.
CELL_CODE = "x = 1  # padding\n" * 4096


def next_revision(notebook: Notebook, step: int) -> Notebook:
    cell = Cell(id=CellId(f"c{step}"), type=CellType.PYTHON, code=CELL_CODE)
    return dataclasses.replace(
        notebook,
        revision=notebook.revision + 1,
        name=f"step {step}",
        cells=(*notebook.cells[-3:], cell),
    )


def acknowledge(notebook: Notebook) -> None:
    sys.stdout.write(f"{notebook.id} {notebook.revision}\n")
    sys.stdout.flush()


async def write_until_killed(data_dir: Path) -> None:
    store = LocalFileStore(data_dir)
    notebooks: list[Notebook] = []
    deadline = time.monotonic() + GIVE_UP_AFTER_S
    step = 0
    while time.monotonic() < deadline:
        if step % 8 == 0:
            notebook = make_notebook(f"nb{len(notebooks)}", minute=len(notebooks))
            await store.create(notebook)
            notebooks.append(notebook)
        else:
            position = step % len(notebooks)
            current = notebooks[position]
            notebook = next_revision(current, step)
            await store.put(notebook, expected_revision=current.revision)
            notebooks[position] = notebook
        acknowledge(notebook)
        step += 1


if __name__ == "__main__":
    asyncio.run(write_until_killed(Path(sys.argv[1])))
