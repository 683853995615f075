"""Rich outputs: what outputs_for makes of DataFrames, figures, charts, objects."""

from __future__ import annotations

import base64
import json
import math
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
import pandas as pd
import pytest
from google.protobuf import json_format

from services.execution.kernel.outputs import (
    MAX_OUTPUT_BYTES,
    MAX_REPR_CHARS,
    TABLE_MIME,
    json_safe,
    outputs_for,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from google.protobuf.message import Message

    from reflow.notebook.v1 import notebook_pb2

matplotlib.use("Agg")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


class Html:
    def _repr_html_(self) -> str:
        return "<b>hi</b>"


class Svg:
    def _repr_svg_(self) -> str:
        return "<svg xmlns='http://www.w3.org/2000/svg'></svg>"


class Everything:
    def _repr_html_(self) -> str:
        return "<i>html</i>"

    def _repr_png_(self) -> bytes:
        return TINY_PNG

    def _repr_markdown_(self) -> str:
        return "*md*"

    def _repr_latex_(self) -> str:
        return r"$x$"

    def __repr__(self) -> str:
        return "Everything()"


class Base64Png:
    def _repr_png_(self) -> str:
        return base64.b64encode(TINY_PNG).decode()


class JsonData:
    def _repr_json_(self) -> tuple[dict[str, object], dict[str, object]]:
        return {"a": [1, 2.5, None], "nan": float("nan")}, {"expanded": True}


class VegaBundle:
    def _repr_mimebundle_(
        self, include: object = None, exclude: object = None
    ) -> dict[str, object]:
        return {
            "application/vnd.vegalite.v5+json": {"mark": "bar"},
            "text/plain": "<VegaBundle>",
        }


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class Huge:
    def __repr__(self) -> str:
        return "x" * (MAX_REPR_CHARS * 2)


class HugeHtml:
    def _repr_html_(self) -> str:
        return "<p>" + "x" * MAX_OUTPUT_BYTES + "</p>"


class BrokenHtml:
    def _repr_html_(self) -> str:
        raise ValueError("broken hook")

    def __repr__(self) -> str:
        return "BrokenHtml()"


class AnswersEverything:
    """__getattr__ says yes to any name; that must not fake display hooks."""

    def __getattr__(self, name: str) -> object:
        return lambda *args, **kwargs: "surprise"

    def __repr__(self) -> str:
        return "AnswersEverything()"


@pytest.fixture
def close_figures() -> Iterator[None]:
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


def plain(message: Message) -> Any:
    """A protobuf JSON value (Value, ListValue) as plain Python data."""
    return json.loads(json_format.MessageToJson(message))


def only(outputs: list[notebook_pb2.Output]) -> notebook_pb2.Output:
    assert len(outputs) == 1
    return outputs[0]


def test_dataframe_becomes_a_table() -> None:
    frame = pd.DataFrame(
        {
            "n": range(150),
            "x": [1.5, math.nan] * 75,
            "when": pd.date_range("2024-01-01", periods=150, freq="D"),
            "label": ["a", None] * 75,
        }
    )

    output = only(outputs_for(frame))

    assert output.mime_type == TABLE_MIME
    assert [(c.name, c.dtype) for c in output.table.columns][:3] == [
        ("n", "int64"),
        ("x", "float64"),
        ("when", str(frame["when"].dtype)),
    ]
    assert output.table.total_rows == 150
    assert output.table.truncated
    assert len(output.table.rows) == 100
    assert plain(output.table.rows[1]) == [
        1,
        None,
        "2024-01-02T00:00:00",
        None,
    ]
    assert output.alternatives["text/html"].lstrip().startswith("<table")
    assert "150 rows" in output.alternatives["text/plain"]


def test_small_dataframe_is_not_truncated() -> None:
    output = only(outputs_for(pd.DataFrame({"a": [1, 2]})))

    assert output.table.total_rows == 2
    assert not output.table.truncated


def test_named_index_becomes_a_column() -> None:
    frame = pd.DataFrame({"total": [3, 4]}, index=pd.Index(["n", "s"], name="region"))

    output = only(outputs_for(frame))

    assert [c.name for c in output.table.columns] == ["region", "total"]
    assert plain(output.table.rows[0]) == ["n", 3]


def test_series_becomes_a_one_column_table() -> None:
    output = only(outputs_for(pd.Series([1, 2, 3], name="amount")))

    assert output.mime_type == TABLE_MIME
    assert [c.name for c in output.table.columns] == ["amount"]


@pytest.mark.usefixtures("close_figures")
def test_matplotlib_figure_becomes_png() -> None:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots()
    axes.plot([1, 2, 3])

    output = only(outputs_for(figure))

    assert output.mime_type == "image/png"
    assert output.binary.startswith(PNG_SIGNATURE)


def test_repr_svg_is_svg_text() -> None:
    output = only(outputs_for(Svg()))

    assert output.mime_type == "image/svg+xml"
    assert output.text.startswith("<svg")


def test_repr_html_is_html_with_plain_text_beside() -> None:
    output = only(outputs_for(Html()))

    assert output.mime_type == "text/html"
    assert output.text == "<b>hi</b>"
    assert output.alternatives["text/plain"].startswith(
        "<tests.execution.test_outputs.Html"
    )


def test_richest_representation_wins_and_text_ones_are_alternatives() -> None:
    output = only(outputs_for(Everything()))

    assert output.mime_type == "text/html"
    assert dict(output.alternatives) == {
        "text/markdown": "*md*",
        "text/latex": "$x$",
        "text/plain": "Everything()",
    }


def test_png_may_come_as_base64_text() -> None:
    output = only(outputs_for(Base64Png()))

    assert output.mime_type == "image/png"
    assert output.binary == TINY_PNG


def test_repr_json_becomes_a_json_value() -> None:
    output = only(outputs_for(JsonData()))

    assert output.mime_type == "application/json"
    assert plain(output.json) == {"a": [1, 2.5, None], "nan": None}


def test_mimebundle_chart_spec_is_honoured() -> None:
    output = only(outputs_for(VegaBundle()))

    assert output.mime_type == "application/vnd.vegalite.v5+json"
    assert plain(output.json) == {"mark": "bar"}
    assert output.alternatives["text/plain"] == "<VegaBundle>"


def test_plotly_figure_becomes_plotly_json() -> None:
    import plotly.graph_objects as go

    figure = go.Figure(go.Bar(y=np.array([1, 2, 3])))

    output = only(outputs_for(figure))

    assert output.mime_type == "application/vnd.plotly.v1+json"
    spec = plain(output.json)
    assert spec["data"][0]["type"] == "bar"
    assert "layout" in spec


def test_altair_chart_becomes_vega_lite() -> None:
    import altair as alt

    chart = alt.Chart(pd.DataFrame({"a": [1, 2]})).mark_bar().encode(x="a")

    output = only(outputs_for(chart))

    assert output.mime_type.startswith("application/vnd.vegalite.v")
    assert output.mime_type.endswith("+json")
    assert plain(output.json)["mark"]["type"] == "bar"


def test_plain_objects_fall_back_to_repr() -> None:
    output = only(outputs_for([1, "a"]))

    assert (output.mime_type, output.text) == ("text/plain", "[1, 'a']")


def test_unprintable_repr_does_not_raise() -> None:
    output = only(outputs_for(Unprintable()))

    assert output.text == "<unprintable Unprintable object>"


def test_long_repr_is_cut() -> None:
    output = only(outputs_for(Huge()))

    assert len(output.text) == MAX_REPR_CHARS + 1
    assert output.text.endswith("…")


def test_oversized_output_becomes_a_notice() -> None:
    output = only(outputs_for(HugeHtml()))

    assert output.mime_type == "text/plain"
    assert output.text.startswith("[output not shown: its text/html is")


def test_failing_hook_is_reported_and_skipped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = only(outputs_for(BrokenHtml()))

    assert (output.mime_type, output.text) == ("text/plain", "BrokenHtml()")
    assert "_repr_html_ for BrokenHtml failed: ValueError: broken hook" in (
        capsys.readouterr().err
    )


def test_getattr_does_not_fake_display_hooks() -> None:
    output = only(outputs_for(AnswersEverything()))

    assert (output.mime_type, output.text) == ("text/plain", "AnswersEverything()")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.int64(3), 3),
        (np.float32(0.5), 0.5),
        (np.bool_(True), True),
        (float("nan"), None),
        (float("inf"), "inf"),
        (pd.NaT, None),
        (pd.NA, None),
        (pd.Timestamp("2024-05-06 07:08:09"), "2024-05-06T07:08:09"),
        (np.datetime64("2024-05-06"), "2024-05-06"),
        (2**60, str(2**60)),
        ({"k": (1, 2)}, {"k": [1, 2]}),
        (np.array([1, 2]), [1, 2]),
        (b"\x00", "b'\\x00'"),
    ],
)
def test_json_safe(value: object, expected: object) -> None:
    assert json_safe(value) == expected
