"""ImportNotebook and ExportNotebook over real gRPC: validation, notes,
stored outputs, and import of every export giving back the same cells."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

import grpc
import nbformat
import pytest

from reflow.notebook.v1 import notebook_pb2
from tests.notebook.corpus import CORPUS, as_ipynb
from tests.notebook.test_service import bad_fields, rpc_error

if TYPE_CHECKING:
    from tests.notebook.conftest import Metadata, Stub

pb = notebook_pb2

# Export formats with the import format that reads them back.
ROUND_TRIPS = [
    (pb.EXPORT_FORMAT_IPYNB, pb.IMPORT_FORMAT_IPYNB),
    (pb.EXPORT_FORMAT_PYTHON, pb.IMPORT_FORMAT_PY_PERCENT),
    (pb.EXPORT_FORMAT_MARIMO, pb.IMPORT_FORMAT_MARIMO),
]


async def import_ipynb(
    stub: Stub, who: Metadata, content: str
) -> pb.ImportNotebookResponse:
    return await stub.ImportNotebook(
        pb.ImportNotebookRequest(
            name="imported", format=pb.IMPORT_FORMAT_IPYNB, content=content
        ),
        metadata=who,
    )


async def export(
    stub: Stub, who: Metadata, notebook_id: str, file_format: pb.ExportFormat.ValueType
) -> pb.ExportNotebookResponse:
    return await stub.ExportNotebook(
        pb.ExportNotebookRequest(notebook_id=notebook_id, format=file_format),
        metadata=who,
    )


def cells_of(notebook: pb.Notebook) -> list[tuple[int, str, str]]:
    return [(c.type, c.code, c.result_name) for c in notebook.cells]


async def test_import_answers_the_notebook_and_notes_on_its_cells(
    stub: Stub, alice: Metadata
) -> None:
    content = as_ipynb([("code", "x = 1"), ("code", "x = x + 1"), ("code", "x")])

    reply = await import_ipynb(stub, alice, content)

    assert [c.code for c in reply.notebook.cells] == ["x = 1", "x_2 = x + 1", "x_2"]
    assert [(n.cell_id, n.message) for n in reply.notes] == [
        (reply.notebook.cells[1].id, "`x` is redefined here: renamed `x_2`"),
        (reply.notebook.cells[2].id, "reads `x_2` where it read `x`"),
    ]
    assert reply.notebook.owner == "alice"


async def test_imported_outputs_are_kept_and_stale(stub: Stub, alice: Metadata) -> None:
    document = nbformat.v4.new_notebook()
    document.cells = [
        nbformat.v4.new_code_cell(
            "print('hi')",
            outputs=[nbformat.v4.new_output("stream", name="stdout", text="hi\n")],
        )
    ]

    reply = await import_ipynb(stub, alice, nbformat.writes(document))

    [cell] = reply.notebook.cells
    assert cell.status == pb.CELL_STATUS_STALE
    assert cell.result.stdout == "hi\n"


async def test_imported_notebook_is_stored(stub: Stub, alice: Metadata) -> None:
    reply = await import_ipynb(stub, alice, as_ipynb(CORPUS["loops"]))

    stored = await stub.GetNotebook(
        pb.GetNotebookRequest(notebook_id=reply.notebook.id), metadata=alice
    )

    assert cells_of(stored.notebook) == cells_of(reply.notebook)
    assert not [c for c in stored.notebook.cells if c.HasField("analysis_error")]


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"format": pb.IMPORT_FORMAT_IPYNB, "content": "{broken"}, "content"),
        ({"format": pb.IMPORT_FORMAT_IPYNB, "content": '{"nbformat": 4}'}, "content"),
        ({"format": pb.IMPORT_FORMAT_IPYNB, "content": ""}, "content"),
        ({"format": pb.IMPORT_FORMAT_UNSPECIFIED, "content": "x = 1"}, "format"),
        ({"format": pb.IMPORT_FORMAT_MARIMO, "content": "def (:"}, "content"),
        ({"format": pb.IMPORT_FORMAT_IPYNB, "content": "x" * 40000}, "content"),
    ],
)
async def test_malformed_import_is_invalid_and_stores_nothing(
    stub: Stub, alice: Metadata, request_fields: dict[str, object], field: str
) -> None:
    request = pb.ImportNotebookRequest(name="bad", **request_fields)  # type: ignore[arg-type]

    error = await rpc_error(stub.ImportNotebook(request, metadata=alice))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(error) == {field}
    listed = await stub.ListNotebooks(pb.ListNotebooksRequest(), metadata=alice)
    assert list(listed.notebooks) == []


@pytest.mark.parametrize(("export_format", "import_format"), ROUND_TRIPS)
@pytest.mark.parametrize("name", sorted(CORPUS))
async def test_import_of_an_export_gives_back_the_same_cells(
    stub: Stub,
    alice: Metadata,
    name: str,
    export_format: pb.ExportFormat.ValueType,
    import_format: pb.ImportFormat.ValueType,
) -> None:
    first = await import_ipynb(stub, alice, as_ipynb(CORPUS[name]))
    file = await export(stub, alice, first.notebook.id, export_format)

    again = await stub.ImportNotebook(
        pb.ImportNotebookRequest(format=import_format, content=file.content),
        metadata=alice,
    )

    assert cells_of(again.notebook) == cells_of(first.notebook)
    assert list(again.notes) == []


async def test_sql_cells_survive_every_round_trip(stub: Stub, alice: Metadata) -> None:
    content = as_ipynb([("code", "n = 2"), ("code", "%%sql t <<\nSELECT {n} AS k")])
    first = await import_ipynb(stub, alice, content)

    for export_format, import_format in ROUND_TRIPS:
        file = await export(stub, alice, first.notebook.id, export_format)
        again = await stub.ImportNotebook(
            pb.ImportNotebookRequest(format=import_format, content=file.content),
            metadata=alice,
        )
        assert cells_of(again.notebook) == cells_of(first.notebook)


async def test_exported_ipynb_is_valid_with_outputs(
    stub: Stub, alice: Metadata
) -> None:
    document = nbformat.v4.new_notebook()
    document.cells = [
        nbformat.v4.new_markdown_cell("# T"),
        nbformat.v4.new_code_cell(
            "1 + 1",
            execution_count=1,
            outputs=[
                nbformat.v4.new_output(
                    "execute_result", data={"text/plain": "2"}, execution_count=1
                )
            ],
        ),
    ]
    first = await import_ipynb(stub, alice, nbformat.writes(document))

    file = await export(stub, alice, first.notebook.id, pb.EXPORT_FORMAT_IPYNB)

    exported = nbformat.reads(file.content, 4)
    nbformat.validate(exported)
    assert exported.cells[1].outputs[0]["data"]["text/plain"] == "2"
    assert (file.media_type, file.file_name) == (
        "application/x-ipynb+json",
        "imported.ipynb",
    )


async def test_exported_html_shows_cells_and_outputs(
    stub: Stub, alice: Metadata
) -> None:
    document = nbformat.v4.new_notebook()
    document.cells = [
        nbformat.v4.new_code_cell(
            "print('<b>')",
            outputs=[nbformat.v4.new_output("stream", name="stdout", text="<b>\n")],
        )
    ]
    first = await import_ipynb(stub, alice, nbformat.writes(document))

    file = await export(stub, alice, first.notebook.id, pb.EXPORT_FORMAT_HTML)

    assert file.content.startswith("<!DOCTYPE html>")
    assert "print(&#x27;&lt;b&gt;&#x27;)" in file.content
    assert "<pre>&lt;b&gt;\n</pre>" in file.content


async def test_script_export_lists_cells_in_dependency_order(
    stub: Stub, alice: Metadata
) -> None:
    created = await stub.CreateNotebook(
        pb.CreateNotebookRequest(name="o"), metadata=alice
    )
    for code in ("print(y)", "y = 1"):
        await stub.CreateCell(
            pb.CreateCellRequest(notebook_id=created.notebook.id, code=code),
            metadata=alice,
        )

    file = await export(stub, alice, created.notebook.id, pb.EXPORT_FORMAT_PYTHON)

    assert file.content.index("y = 1") < file.content.index("print(y)")


async def test_export_of_another_users_notebook_is_not_found(
    stub: Stub, alice: Metadata, bob: Metadata
) -> None:
    first = await import_ipynb(stub, alice, as_ipynb(CORPUS["loops"]))

    error = await rpc_error(
        export(stub, bob, first.notebook.id, pb.EXPORT_FORMAT_IPYNB)
    )

    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_export_without_a_format_is_invalid(stub: Stub, alice: Metadata) -> None:
    first = await import_ipynb(stub, alice, as_ipynb(CORPUS["loops"]))

    error = await rpc_error(
        export(stub, alice, first.notebook.id, pb.EXPORT_FORMAT_UNSPECIFIED)
    )

    assert bad_fields(error) == {"format"}


async def test_marimo_export_is_one_function_per_cell_reads_in_defs_out(
    stub: Stub, alice: Metadata
) -> None:
    content = as_ipynb([("markdown", "# M"), ("code", "a = 1"), ("code", "b = a + 1")])
    first = await import_ipynb(stub, alice, content)

    file = await export(stub, alice, first.notebook.id, pb.EXPORT_FORMAT_MARIMO)

    tree = ast.parse(file.content)
    cells = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    signatures = [
        ([a.arg for a in cell.args.args], ast.unparse(cell.body[-1])) for cell in cells
    ]
    assert signatures == [
        ([], "return (mo,)"),
        (["mo"], "return"),
        ([], "return (a,)"),
        (["a"], "return (b,)"),
    ]
    assert "app = marimo.App()" in file.content
