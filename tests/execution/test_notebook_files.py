"""A notebook's files are its kernel's working directory, both ways.

Real notebook and execution services on port 0, confined kernels: an
uploaded file is in the cell's current directory, a file a cell writes there
is stored like an upload (and is there for the next kernel), and what a
cell plants there that is not a regular file with a valid name stays in
the kernel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reflow.execution.v1 import execution_pb2
from reflow.notebook.v1 import notebook_pb2
from tests.execution.conftest import finished, stderr_of, stdout_of

if TYPE_CHECKING:
    from tests.execution.conftest import Stack

SUCCESS = notebook_pb2.CELL_STATUS_SUCCESS


async def _notebook(stack: Stack, *codes: str) -> tuple[str, list[str]]:
    created = await stack.notebooks.CreateNotebook(
        notebook_pb2.CreateNotebookRequest(name="files"), metadata=stack.metadata()
    )
    notebook_id = created.notebook.id
    cell_ids = []
    for code in codes:
        cell = await stack.notebooks.CreateCell(
            notebook_pb2.CreateCellRequest(notebook_id=notebook_id, code=code),
            metadata=stack.metadata(),
        )
        cell_ids.append(cell.cell.id)
    return notebook_id, cell_ids


async def _set_code(stack: Stack, notebook_id: str, cell_id: str, code: str) -> None:
    await stack.notebooks.UpdateCell(
        notebook_pb2.UpdateCellRequest(
            notebook_id=notebook_id, cell_id=cell_id, code=code
        ),
        metadata=stack.metadata(),
    )


async def _put(stack: Stack, notebook_id: str, path: str, content: bytes) -> None:
    await stack.notebooks.PutFile(
        notebook_pb2.PutFileRequest(
            notebook_id=notebook_id, path=path, content=content
        ),
        metadata=stack.metadata(),
    )


async def _paths(stack: Stack, notebook_id: str) -> list[str]:
    reply = await stack.notebooks.ListFiles(
        notebook_pb2.ListFilesRequest(notebook_id=notebook_id),
        metadata=stack.metadata(),
    )
    return [file.path for file in reply.files]


async def _content(stack: Stack, notebook_id: str, path: str) -> bytes:
    reply = await stack.notebooks.GetFile(
        notebook_pb2.GetFileRequest(notebook_id=notebook_id, path=path),
        metadata=stack.metadata(),
    )
    return reply.content


async def test_an_uploaded_file_is_in_the_cells_current_directory(
    stack: Stack,
) -> None:
    notebook_id, (cell,) = await _notebook(
        stack, "import os\nprint(os.getcwd(), open('data/a.csv').read())"
    )
    await _put(stack, notebook_id, "data/a.csv", b"x,y\n1,2\n")

    events = await stack.run(notebook_id, cell)

    assert finished(events)[cell].status == SUCCESS
    assert stdout_of(events, cell) == "/home/notebook/work x,y\n1,2\n\n"


async def test_a_file_a_cell_writes_is_stored_and_the_next_kernel_has_it(
    stack: Stack,
) -> None:
    notebook_id, (cell,) = await _notebook(
        stack,
        "import os\nos.makedirs('out', exist_ok=True)\n"
        "open('out/r.txt', 'w').write('written by a cell')",
    )
    await stack.run(notebook_id, cell)

    assert await _paths(stack, notebook_id) == ["out/r.txt"]
    assert await _content(stack, notebook_id, "out/r.txt") == b"written by a cell"

    await stack.execution.RestartKernel(
        execution_pb2.RestartKernelRequest(notebook_id=notebook_id),
        metadata=stack.metadata(),
    )
    await _set_code(stack, notebook_id, cell, "print(open('out/r.txt').read())")
    events = await stack.run(notebook_id, cell)
    assert stdout_of(events, cell) == "written by a cell\n"


async def test_uploads_and_deletions_reach_a_running_kernel_at_the_next_run(
    stack: Stack,
) -> None:
    show = "import os\nprint(sorted(os.listdir('.')))"
    notebook_id, (cell,) = await _notebook(stack, show)
    await _put(stack, notebook_id, "old.txt", b"old")
    assert stdout_of(await stack.run(notebook_id, cell), cell) == "['old.txt']\n"

    await _put(stack, notebook_id, "new.txt", b"new")
    await stack.notebooks.DeleteFile(
        notebook_pb2.DeleteFileRequest(notebook_id=notebook_id, path="old.txt"),
        metadata=stack.metadata(),
    )
    await _set_code(stack, notebook_id, cell, show + "\nprint(open('new.txt').read())")

    assert stdout_of(await stack.run(notebook_id, cell), cell) == "['new.txt']\nnew\n"


async def test_a_file_a_cell_deletes_is_deleted_from_the_notebook(
    stack: Stack,
) -> None:
    notebook_id, (cell,) = await _notebook(stack, "import os\nos.remove('gone.txt')")
    await _put(stack, notebook_id, "gone.txt", b"x")
    await _put(stack, notebook_id, "kept.txt", b"y")

    events = await stack.run(notebook_id, cell)

    assert finished(events)[cell].status == SUCCESS
    assert await _paths(stack, notebook_id) == ["kept.txt"]


async def test_an_unchanged_directory_reports_nothing_and_changes_nothing(
    stack: Stack,
) -> None:
    notebook_id, (cell,) = await _notebook(stack, "x = 1")
    await _put(stack, notebook_id, "a.txt", b"a")
    before = await stack.notebooks.GetFile(
        notebook_pb2.GetFileRequest(notebook_id=notebook_id, path="a.txt"),
        metadata=stack.metadata(),
    )

    events = await stack.run(notebook_id, cell)

    assert stderr_of(events, cell) == ""
    after = await stack.notebooks.GetFile(
        notebook_pb2.GetFileRequest(notebook_id=notebook_id, path="a.txt"),
        metadata=stack.metadata(),
    )
    assert after.file.update_time == before.file.update_time


async def test_a_file_over_the_cap_is_not_stored_and_the_cell_says_so(
    stack: Stack,
) -> None:
    notebook_id, (cell,) = await _notebook(
        stack,
        "open('big.bin', 'wb').write(b'x' * (9 * 1024 * 1024))\n"
        "open('small.txt', 'w').write('fine')",
    )

    events = await stack.run(notebook_id, cell)

    assert finished(events)[cell].status == SUCCESS
    assert "'big.bin' was not saved with the notebook" in stderr_of(events, cell)
    assert await _paths(stack, notebook_id) == ["small.txt"]


async def test_links_fifos_and_bad_names_stay_in_the_kernel(stack: Stack) -> None:
    notebook_id, (cell,) = await _notebook(
        stack,
        "import os\n"
        "os.symlink('/etc/passwd', 'passwd')\n"
        "os.symlink('/', 'root')\n"
        "os.mkfifo('pipe')\n"
        "open('plain.txt', 'w').write('ok')\n"
        "open('back\\\\slash', 'w').write('no')\n"
        "open(b'\\xff-not-utf8', 'w').write('no')\n"
        "open('..dots', 'w').write('fine')\n"
        "os.makedirs('a/' * 20, exist_ok=True)\n",
    )

    events = await stack.run(notebook_id, cell)

    assert finished(events)[cell].status == SUCCESS
    assert await _paths(stack, notebook_id) == ["..dots", "plain.txt"]
    stderr = stderr_of(events, cell)
    assert "'back\\\\slash' was not saved" in stderr
    assert "not-utf8' was not saved" in stderr
    # The kernel is still fine and answers the next run.
    await _set_code(stack, notebook_id, cell, "print('alive')")
    assert stdout_of(await stack.run(notebook_id, cell), cell) == "alive\n"
