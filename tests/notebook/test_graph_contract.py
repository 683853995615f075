"""The dependency graph in the contract, held definitions, and the two settings
(lazy run mode per notebook, disabled cells), through the real service."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest

from reflow.notebook.v1 import notebook_pb2 as pb
from tests.notebook.test_service import add_cell, new_notebook

if TYPE_CHECKING:
    from tests.notebook.conftest import InternalStub, Metadata, Stub

Kind = pb.AnalysisError


async def cells_of(stub: Stub, who: Metadata, notebook_id: str) -> list[pb.Cell]:
    reply = await stub.GetNotebook(
        pb.GetNotebookRequest(notebook_id=notebook_id), metadata=who
    )
    return list(reply.notebook.cells)


async def record(
    internal: InternalStub,
    who: Metadata,
    notebook_id: str,
    cell_id: str,
    status: pb.CellStatus.ValueType,
    stdout: str = "",
) -> None:
    await internal.RecordCellResult(
        pb.RecordCellResultRequest(
            notebook_id=notebook_id,
            cell_id=cell_id,
            result=pb.CellResult(status=status, stdout=stdout),
        ),
        metadata=who,
    )


async def test_cells_expose_parents_children_and_deletes(
    stub: Stub, alice: Metadata
) -> None:
    nb = await new_notebook(stub, alice)
    a = (await add_cell(stub, alice, nb.id, "x = 1")).cell.id
    b = (await add_cell(stub, alice, nb.id, "print(x)")).cell.id
    d = (await add_cell(stub, alice, nb.id, "del x")).cell.id

    cells = await cells_of(stub, alice, nb.id)

    assert [list(c.parent_ids) for c in cells] == [[], [a], [a, b]]
    assert [list(c.child_ids) for c in cells] == [[b, d], [d], []]
    assert list(cells[2].deletes) == ["x"]


async def test_every_contested_name_is_listed_with_its_other_cells(
    stub: Stub, alice: Metadata
) -> None:
    nb = await new_notebook(stub, alice)
    a = (await add_cell(stub, alice, nb.id, "x = 1")).cell.id
    b = (await add_cell(stub, alice, nb.id, "y = 1")).cell.id

    reply = await add_cell(stub, alice, nb.id, "x = 2\ny = 2")

    error = reply.cell.analysis_error
    assert error.kind == Kind.KIND_MULTIPLE_DEFINITION
    assert list(error.names) == ["x", "y"]
    assert [(c.name, list(c.cell_ids)) for c in error.contested] == [
        ("x", [a]),
        ("y", [b]),
    ]
    assert error.message == (
        "'x' is also defined by cell 1; 'y' is also defined by cell 2"
    )


async def test_a_cell_lists_all_its_errors_most_basic_first(
    stub: Stub, alice: Metadata
) -> None:
    nb = await new_notebook(stub, alice)
    a = (await add_cell(stub, alice, nb.id, "x = y")).cell.id
    b = (await add_cell(stub, alice, nb.id, "y = x\nx = 2")).cell.id

    cells = await cells_of(stub, alice, nb.id)

    kinds = [e.kind for e in cells[1].analysis_errors]
    assert kinds == [Kind.KIND_MULTIPLE_DEFINITION, Kind.KIND_CYCLE]
    assert list(cells[1].analysis_errors[1].cell_ids) == [a, b]
    assert (
        cells[1].analysis_errors[1].message == "cells 1 and 2 form a dependency cycle"
    )


async def test_a_cell_that_ran_holds_its_name_against_a_newcomer(
    stub: Stub, alice: Metadata, internal_stub: InternalStub
) -> None:
    nb = await new_notebook(stub, alice)
    a = (await add_cell(stub, alice, nb.id, "x = 1")).cell.id
    await record(internal_stub, alice, nb.id, a, pb.CELL_STATUS_SUCCESS)

    newcomer = await add_cell(stub, alice, nb.id, "x = 2")

    cells = await cells_of(stub, alice, nb.id)
    assert newcomer.cell.analysis_error.kind == Kind.KIND_MULTIPLE_DEFINITION
    assert not cells[0].HasField("analysis_error")


@pytest.mark.parametrize("how", ["run", "edited"])
async def test_the_holder_shows_the_error_once_run_or_edited(
    stub: Stub, alice: Metadata, internal_stub: InternalStub, how: str
) -> None:
    nb = await new_notebook(stub, alice)
    a = (await add_cell(stub, alice, nb.id, "x = 1")).cell.id
    await record(internal_stub, alice, nb.id, a, pb.CELL_STATUS_SUCCESS)
    b = (await add_cell(stub, alice, nb.id, "x = 2")).cell.id

    if how == "run":
        await record(internal_stub, alice, nb.id, a, pb.CELL_STATUS_ERROR)
    else:
        await stub.UpdateCell(
            pb.UpdateCellRequest(notebook_id=nb.id, cell_id=a, code="x = 3"),
            metadata=alice,
        )

    cells = await cells_of(stub, alice, nb.id)
    assert list(cells[0].analysis_error.cell_ids) == [b]


async def test_run_mode_is_a_notebook_setting(stub: Stub, alice: Metadata) -> None:
    nb = await new_notebook(stub, alice)

    reply = await stub.SetRunMode(
        pb.SetRunModeRequest(notebook_id=nb.id, run_mode=pb.RUN_MODE_LAZY),
        metadata=alice,
    )
    got = await stub.GetNotebook(
        pb.GetNotebookRequest(notebook_id=nb.id), metadata=alice
    )

    assert nb.run_mode == pb.RUN_MODE_AUTOMATIC
    assert reply.notebook.run_mode == got.notebook.run_mode == pb.RUN_MODE_LAZY
    assert reply.notebook.revision == nb.revision + 1


async def test_run_mode_must_be_given(stub: Stub, alice: Metadata) -> None:
    nb = await new_notebook(stub, alice)

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.SetRunMode(pb.SetRunModeRequest(notebook_id=nb.id), metadata=alice)

    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_disabling_a_cell_is_a_cell_setting(stub: Stub, alice: Metadata) -> None:
    nb = await new_notebook(stub, alice)
    a = (await add_cell(stub, alice, nb.id, "x = 1")).cell.id

    reply = await stub.SetCellDisabled(
        pb.SetCellDisabledRequest(notebook_id=nb.id, cell_id=a, disabled=True),
        metadata=alice,
    )
    cells = await cells_of(stub, alice, nb.id)

    assert reply.cell.disabled
    assert cells[0].disabled
    assert cells[0].code == "x = 1"


async def test_a_lazy_stale_mark_keeps_the_last_result(
    stub: Stub, alice: Metadata, internal_stub: InternalStub
) -> None:
    nb = await new_notebook(stub, alice)
    a = (await add_cell(stub, alice, nb.id, "print(1)")).cell.id
    await record(internal_stub, alice, nb.id, a, pb.CELL_STATUS_SUCCESS, "1\n")

    await record(internal_stub, alice, nb.id, a, pb.CELL_STATUS_STALE)

    cells = await cells_of(stub, alice, nb.id)
    assert cells[0].status == pb.CELL_STATUS_STALE
    assert cells[0].result.stdout == "1\n"
