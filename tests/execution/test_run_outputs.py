"""Rich outputs and errors as a client of RunCells sees them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from reflow.execution.v1 import execution_pb2
from tests.execution.conftest import finished, outputs_of

if TYPE_CHECKING:
    from tests.execution.conftest import Stack

CASES = [
    (
        "dataframe",
        "import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})",
        "application/vnd.reflow.table+json",
    ),
    ("figure", "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])", "image/png"),
    (
        "svg",
        "class S:\n    def _repr_svg_(self):\n        return '<svg></svg>'\nS()",
        "image/svg+xml",
    ),
    (
        "html",
        "class H:\n    def _repr_html_(self):\n        return '<b>hi</b>'\nH()",
        "text/html",
    ),
    (
        "plotly",
        "import plotly.graph_objects as go\ngo.Figure(go.Bar(y=[1, 2]))",
        "application/vnd.plotly.v1+json",
    ),
    (
        "altair",
        "import altair as alt, pandas as pd\n"
        "alt.Chart(pd.DataFrame({'a': [1]})).mark_bar().encode(x='a')",
        "application/vnd.vegalite",
    ),
    ("fallback repr", "object()", "text/plain"),
]


@pytest.mark.parametrize(("name", "code", "mime"), CASES, ids=[c[0] for c in CASES])
async def test_rich_output_kinds(stack: Stack, name: str, code: str, mime: str) -> None:
    nb, a = await stack.notebook(code)

    events = await stack.run(nb, a)

    outputs = outputs_of(events, a)
    assert outputs, f"no output for {name}: {finished(events)[a].error.traceback}"
    assert outputs[0].mime_type.startswith(mime)


async def test_dataframe_table_has_columns_dtypes_and_counts(stack: Stack) -> None:
    nb, a = await stack.notebook(
        "import pandas as pd\npd.DataFrame({'n': range(1000), 's': ['v'] * 1000})"
    )

    events = await stack.run(nb, a)

    table = outputs_of(events, a)[0].table
    assert [c.name for c in table.columns] == ["n", "s"]
    assert table.columns[0].dtype == "int64"
    assert table.columns[1].dtype in {"object", "str"}  # pandas 3 says str
    assert table.total_rows == 1000
    assert table.truncated
    assert 0 < len(table.rows) < 1000
    assert "text/html" in outputs_of(events, a)[0].alternatives


async def test_display_of_several_objects_in_order(stack: Stack) -> None:
    nb, a = await stack.notebook("display(1, 'two')\ndisplay([3])")

    events = await stack.run(nb, a)

    assert [o.text for o in outputs_of(events, a)] == ["1", "'two'", "[3]"]


async def test_stdout_and_stderr_are_separate_streams(stack: Stack) -> None:
    nb, a = await stack.notebook(
        "import sys\nprint('out')\nprint('err', file=sys.stderr)"
    )

    events = await stack.run(nb, a)

    chunks = [e.stream_chunk for e in events if e.HasField("stream_chunk")]
    out = "".join(c.text for c in chunks if c.stream == execution_pb2.STREAM_STDOUT)
    err = "".join(c.text for c in chunks if c.stream == execution_pb2.STREAM_STDERR)
    assert (out, err) == ("out\n", "err\n")
    assert finished(events)[a].stderr == "err\n"


async def test_traceback_names_the_cell_and_line(stack: Stack) -> None:
    nb, a = await stack.notebook("x = 1\n\ndef f():\n    return 1 / 0\n\nf()")

    events = await stack.run(nb, a)

    error = finished(events)[a].error
    assert error.type == "ZeroDivisionError"
    cell_frames = [f for f in error.frames if f.cell_id == a]
    assert [f.line for f in cell_frames] == [6, 4]
    assert "services/execution" not in error.traceback
