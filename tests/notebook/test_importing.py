"""The importer's rewriting, table-driven: one source notebook, the cells
Reflow gets."""

from __future__ import annotations

from dataclasses import dataclass

import nbformat
import pytest

from services.notebook.importing import ImportFormat, import_file
from services.notebook.models import CellType
from services.shared.errors import InvalidArgument


@dataclass(frozen=True)
class Case:
    name: str
    cells: list[str]
    expected: list[str]


def ipynb(*sources: str, markdown: tuple[int, ...] = ()) -> str:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell(s)
        if i in markdown
        else nbformat.v4.new_code_cell(s)
        for i, s in enumerate(sources)
    ]
    text: str = nbformat.writes(notebook)
    return text


CASES = [
    Case(
        "a name defined three times gets fresh names, reads follow",
        ["x = 1", "print(x)", "x = 2", "print(x)", "x = 3", "print(x)"],
        ["x = 1", "print(x)", "x_2 = 2", "print(x_2)", "x_3 = 3", "print(x_3)"],
    ),
    Case(
        "self-rebinding reads the old version in place",
        ["pop = [3, 1]", "pop = sorted(pop)  # keep order", "print(pop)"],
        ["pop = [3, 1]", "pop_2 = sorted(pop)  # keep order", "print(pop_2)"],
    ),
    Case(
        "augmented assignment copies the old version first",
        ["n = 1", "n += 1", "print(n)"],
        ["n = 1", "n_2 = n\nn_2 += 1", "print(n_2)"],
    ),
    Case(
        "a loop that rebinds copies the old version first",
        ["total = 0", "for i in range(3):\n    total = total + i", "total"],
        [
            "total = 0",
            "total_2 = total\nfor i in range(3):\n    total_2 = total_2 + i",
            "total_2",
        ],
    ),
    Case(
        "names used only in their cell become private",
        ["fig, ax = 1, 2\nax", "fig, ax = 3, 4\nfig"],
        ["_fig, _ax = 1, 2\n_ax", "fig, ax = 3, 4\nfig"],
    ),
    Case(
        "loop variables of several cells become private",
        ["for i in range(2):\n    print(i)", "for i in 'ab':\n    print(i)"],
        ["for _i in range(2):\n    print(_i)", "for i in 'ab':\n    print(i)"],
    ),
    Case(
        "a function's own locals of the same name are left alone",
        ["x = 1", "def f(x):\n    return x + 1\nx = f(x)", "x"],
        ["x = 1", "def f(x):\n    return x + 1\nx_2 = f(x)", "x_2"],
    ),
    Case(
        "a redefined function is renamed with its calls",
        ["def f():\n    return 1", "f()", "def f():\n    return 2", "f()"],
        ["def f():\n    return 1", "f()", "def f_2():\n    return 2", "f_2()"],
    ),
    Case(
        "a repeated import is commented out",
        ["import math", "import math\nr = math.pi", "r"],
        ["import math", "# import math\nr = math.pi", "r"],
    ),
    Case(
        "an import of something else under the same name is renamed",
        ["from math import sqrt as f", "f(4)", "from cmath import sqrt as f", "f(4)"],
        [
            "from math import sqrt as f",
            "f(4)",
            "from cmath import sqrt as f_2",
            "f_2(4)",
        ],
    ),
    Case(
        "a comprehension variable is not the global",
        ["y = 1", "z = [y for y in range(3)]", "y = 2", "print(y, z)"],
        ["_y = 1", "z = [y for y in range(3)]", "y = 2", "print(y, z)"],
    ),
    Case(
        "%matplotlib is dropped, %time keeps its code, shell commands are comments",
        ["%matplotlib inline\nimport math", "%time v = math.pi", "!ls\nv"],
        ["import math", "v = math.pi", "# !ls\nv"],
    ),
    Case(
        "%%time runs the cell without timing it",
        ["%%time\nw = 2"],
        ["w = 2"],
    ),
    Case(
        "an unknown cell magic is commented out",
        ["%%bash\necho hi"],
        ["# %%bash\n# echo hi"],
    ),
    Case(
        "non-ASCII names are renamed too",
        ["é = 1", "é = é + 1", "é"],
        ["é = 1", "é_2 = é + 1", "é_2"],
    ),
    Case(
        "match captures are renamed",
        ["x = 1", "match [x]:\n    case [y] as x:\n        pass", "x"],
        ["x = 1", "x_2 = x\nmatch [x_2]:\n    case [y] as x_2:\n        pass", "x_2"],
    ),
    Case(
        "names in f-strings are rewritten",
        ["s = 1", "s = 2", "print(f'{s}!')"],
        ["_s = 1", "s = 2", "print(f'{s}!')"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_import_rewrites_cells(case: Case) -> None:
    cells = import_file(ImportFormat.IPYNB, ipynb(*case.cells))

    assert [cell.code for cell in cells] == case.expected


def test_every_change_is_noted_on_its_cell() -> None:
    cells = import_file(ImportFormat.IPYNB, ipynb("x = 1", "x = x + 1", "x"))

    assert [cell.notes for cell in cells] == [
        (),
        ("`x` is redefined here: renamed `x_2`",),
        ("reads `x_2` where it read `x`",),
    ]


def test_sql_cell_magic_becomes_a_sql_cell() -> None:
    cells = import_file(
        ImportFormat.IPYNB, ipynb("%%sql totals <<\nSELECT 1 AS n", "totals")
    )

    assert (cells[0].type, cells[0].code, cells[0].result_name) == (
        CellType.SQL,
        "SELECT 1 AS n",
        "totals",
    )


def test_markdown_is_kept_as_markdown() -> None:
    cells = import_file(ImportFormat.IPYNB, ipynb("# Title\n\ntext", markdown=(0,)))

    assert (cells[0].type, cells[0].code) == (CellType.MARKDOWN, "# Title\n\ntext")


def test_stored_outputs_are_kept() -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(
            "print(1)\n2",
            execution_count=3,
            outputs=[
                nbformat.v4.new_output("stream", name="stdout", text="1\n"),
                nbformat.v4.new_output(
                    "execute_result", data={"text/plain": "2"}, execution_count=3
                ),
            ],
        )
    ]

    [cell] = import_file(ImportFormat.IPYNB, nbformat.writes(notebook))

    assert cell.result == {
        "status": "CELL_STATUS_SUCCESS",
        "stdout": "1\n",
        "outputs": [{"mimeType": "text/plain", "text": "2"}],
        "executionCount": "3",
    }


def test_percent_script_cells() -> None:
    script = (
        "# ---\n# jupyter:\n#   kernelspec: {}\n# ---\n\n"
        "# %% [markdown]\n# # Title\n\n# %%\nx = 1\n\n# %%\nx = 2\nprint(x)\n"
    )

    cells = import_file(ImportFormat.PY_PERCENT, script)

    assert [(c.type, c.code) for c in cells] == [
        (CellType.MARKDOWN, "# Title"),
        (CellType.PYTHON, "_x = 1"),
        (CellType.PYTHON, "x = 2\nprint(x)"),
    ]


MARIMO = '''import marimo

__generated_with = "0.19.7"
app = marimo.App()


@app.cell
def _():
    import marimo as mo
    return (mo,)


@app.cell(hide_code=True)
def _(mo):
    mo.md(r"""
    # Sales
    """)
    return


@app.cell
def _():
    # the base
    x = 1
    return (x,)


@app.cell
def _(mo, x):
    totals = mo.sql(
        f"""
        SELECT {x} AS n
        """
    )
    return (totals,)


if __name__ == "__main__":
    app.run()
'''


def test_marimo_file_cells() -> None:
    cells = import_file(ImportFormat.MARIMO, MARIMO)

    assert [(c.type, c.code, c.result_name) for c in cells] == [
        (CellType.MARKDOWN, "# Sales", ""),
        (CellType.PYTHON, "# the base\nx = 1", ""),
        (CellType.SQL, "SELECT {x} AS n", "totals"),
    ]


@pytest.mark.parametrize(
    ("file_format", "content"),
    [
        (ImportFormat.IPYNB, "{not json"),
        (ImportFormat.IPYNB, '{"cells": "nope", "nbformat": 4}'),
        (ImportFormat.IPYNB, '{"nbformat": 4, "nbformat_minor": 5, "metadata": {}}'),
        (ImportFormat.IPYNB, "[" * 100_000 + "]" * 100_000),
        (ImportFormat.IPYNB, "[]"),
        (ImportFormat.MARIMO, "def broken(:"),
        (ImportFormat.PY_PERCENT, "   \n"),
    ],
)
def test_malformed_files_name_the_content_field(
    file_format: ImportFormat, content: str
) -> None:
    with pytest.raises(InvalidArgument) as error:
        import_file(file_format, content)

    assert [v[0] for v in error.value.field_violations] == ["content"]
