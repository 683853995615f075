"""Rich outputs: how a Python value becomes `notebook.v1.Output` messages.

`outputs_for(obj)` serves both the last expression of a cell and
`display(*objs)`. Some kinds are recognised by type, because they are common
and their own display hooks do not suit us: pandas DataFrames and Series
become tables (first `TABLE_ROWS` rows, with `text/html` and `text/plain`
beside), matplotlib figures become PNGs, plotly figures their plotly JSON and
altair charts their vega-lite spec. Types are recognised through
`sys.modules`, so a kernel that never imported pandas never pays for it (an
object cannot be a DataFrame if pandas was never imported).

Anything else goes through the IPython display protocol: `_repr_mimebundle_`
and the `_repr_*_` methods. Of what an object offers, the richest
representation becomes the output (in `PRIORITY` order) and the other textual
ones its `alternatives`. The fallback is `text/plain` with a capped `repr`.
A display hook that raises is reported on the cell's stderr and skipped; a
`repr` that raises becomes `<unprintable T object>`. Either way the cell goes
on.

Sizes are bounded so a kernel cannot produce an oversized message: a repr is
cut at `MAX_REPR_CHARS`, a table cell's text at `MAX_TABLE_TEXT_CHARS`, and an
output whose serialized form exceeds `MAX_OUTPUT_BYTES` loses its
alternatives, then becomes a text/plain notice.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import decimal
import io
import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeAlias, cast

from google.protobuf import json_format, struct_pb2

from reflow.notebook.v1 import notebook_pb2

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

JsonValue: TypeAlias = (
    "None | bool | int | float | str | list[JsonValue] | dict[str, JsonValue]"
)

TABLE_MIME: Final = "application/vnd.reflow.table+json"
PLOTLY_MIME: Final = "application/vnd.plotly.v1+json"
TABLE_ROWS: Final = 100
MAX_REPR_CHARS: Final = 64 * 1024
MAX_TABLE_TEXT_CHARS: Final = 4096
MAX_OUTPUT_BYTES: Final = 8 * 1024 * 1024
ELLIPSIS: Final = "…"

# The `_repr_*_` methods of the display protocol and the MIME type of each.
REPR_METHODS: Final = (
    ("_repr_html_", "text/html"),
    ("_repr_png_", "image/png"),
    ("_repr_jpeg_", "image/jpeg"),
    ("_repr_svg_", "image/svg+xml"),
    ("_repr_markdown_", "text/markdown"),
    ("_repr_json_", "application/json"),
    ("_repr_latex_", "text/latex"),
)
_CHART_MIME = re.compile(r"^application/vnd\.(plotly\.v1|vega(lite)?\.v\d+)\+json$")
# Altair 6's own "mimetype" renderer spells the suffix ".json".
_DOTTED_VEGA_MIME = re.compile(r"^(application/vnd\.vega(?:lite)?\.v\d+)\.json$")
PRIORITY: Final[tuple[Callable[[str], bool], ...]] = (
    lambda mime: _CHART_MIME.match(mime) is not None,
    lambda mime: mime == "text/html",
    lambda mime: mime in ("image/png", "image/jpeg", "image/gif"),
    lambda mime: mime == "image/svg+xml",
    lambda mime: mime == "text/markdown",
    lambda mime: mime == "application/json" or mime.endswith("+json"),
    lambda mime: mime == "text/latex",
    lambda mime: mime == "text/plain",
)
_BINARY_MIMES: Final = frozenset({"image/png", "image/jpeg", "image/gif"})
# Deep enough for any real JSON; stops self-referencing containers.
_MAX_DEPTH: Final = 64


def outputs_for(obj: object) -> list[notebook_pb2.Output]:
    """The outputs that show `obj`: its richest representation, size-capped."""
    for kind, formatter in _type_formatters():
        if kind is not None and isinstance(obj, kind):
            try:
                return [capped(formatter(obj))]
            except Exception as error:  # noqa: BLE001 - shown, then the fallback
                _report_failure(obj, formatter.__name__, error)
    return [capped(_from_bundle(obj))]


def table_output(
    frame: pd.DataFrame, max_rows: int = TABLE_ROWS
) -> notebook_pb2.Output:
    """A DataFrame as a table of its first `max_rows` rows, with html and text."""
    head = frame.head(max_rows)
    return notebook_pb2.Output(
        mime_type=TABLE_MIME,
        table=table_page(frame, 0, max_rows),
        alternatives={"text/html": head.to_html(), "text/plain": safe_repr(frame)},
    )


def table_page(frame: pd.DataFrame, offset: int, limit: int) -> notebook_pb2.Table:
    """Rows `offset` .. `offset + limit` of a DataFrame, as a table.

    Whether the index becomes leading columns is decided on the whole frame,
    so every page of one table has the same columns.
    """
    rows = frame.iloc[offset : offset + limit]
    shown = rows if _plain_index(frame.index) else _with_index(rows)
    table = notebook_pb2.Table(
        columns=[
            notebook_pb2.TableColumn(name=_column_name(name), dtype=str(dtype))
            for name, dtype in shown.dtypes.items()
        ],
        total_rows=len(frame),
        truncated=offset + len(rows) < len(frame),
        row_offset=offset,
    )
    for row in shown.itertuples(index=False, name=None):
        values = table.rows.add()
        # ListValue takes nested lists and dicts too; its stub says otherwise.
        cells = [json_safe(value, MAX_TABLE_TEXT_CHARS) for value in row]
        values.extend(cast("list[Any]", cells))
    return table


def figure_output(figure: Figure) -> notebook_pb2.Output:
    """A matplotlib figure as a PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return notebook_pb2.Output(mime_type="image/png", binary=buffer.getvalue())


def capped(output: notebook_pb2.Output) -> notebook_pb2.Output:
    """`output`, or less of it, within MAX_OUTPUT_BYTES."""
    if output.ByteSize() <= MAX_OUTPUT_BYTES:
        return output
    for mime in sorted(output.alternatives, key=lambda m: -len(output.alternatives[m])):
        del output.alternatives[mime]
        if output.ByteSize() <= MAX_OUTPUT_BYTES:
            return output
    return notebook_pb2.Output(
        mime_type="text/plain",
        text=(
            f"[output not shown: its {output.mime_type} is {output.ByteSize()} bytes;"
            f" the limit is {MAX_OUTPUT_BYTES} bytes]"
        ),
    )


def safe_repr(obj: object, limit: int = MAX_REPR_CHARS) -> str:
    """repr(obj), cut at `limit` characters; never raises."""
    try:
        text = repr(obj)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not fail the cell
        return f"<unprintable {type(obj).__name__} object>"
    return _cut(text, limit)


def json_safe(value: object, max_text: int | None = None, depth: int = 0) -> JsonValue:
    """`value` as plain JSON data: NaN→null, timestamps→ISO, numpy→Python."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _cut(value, max_text)
    if isinstance(value, int):
        # JSON numbers are doubles in protobuf's Value; keep big ints exact.
        return value if abs(value) <= 2**53 else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return value if math.isfinite(value) else str(value)
    converted = _convert_library_scalar(value)
    if converted is not _UNCONVERTED:
        return json_safe(converted, max_text, depth)
    if depth >= _MAX_DEPTH:
        return _cut(safe_repr(value), max_text)
    if isinstance(value, Mapping):
        return {
            str(key): json_safe(item, max_text, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(item, max_text, depth + 1) for item in value]
    return _cut(_safe_str(value), max_text)


def json_value(data: object) -> struct_pb2.Value:
    """JSON data (or a JSON string) as a protobuf Value."""
    if isinstance(data, (str, bytes)):
        data = json.loads(data)
    value = struct_pb2.Value()
    # ParseDict fills a Value from any JSON, not only objects as its stub says.
    json_format.ParseDict(cast("Any", json_safe(data)), value)
    return value


# -- types recognised directly -------------------------------------------------


def _type_formatters() -> list[
    tuple[type | None, Callable[[Any], notebook_pb2.Output]]
]:
    pandas = sys.modules.get("pandas")
    figure = sys.modules.get("matplotlib.figure")
    plotly = sys.modules.get("plotly.basedatatypes")
    altair = sys.modules.get("altair")
    return [
        (getattr(pandas, "DataFrame", None), table_output),
        (getattr(pandas, "Series", None), _series_output),
        (getattr(figure, "Figure", None), figure_output),
        (getattr(plotly, "BaseFigure", None), _plotly_output),
        (getattr(altair, "TopLevelMixin", None), _altair_output),
    ]


def _series_output(series: pd.Series[Any]) -> notebook_pb2.Output:
    return table_output(series.to_frame())


def _plotly_output(figure: Any) -> notebook_pb2.Output:
    # to_json() is plotly's own encoder: numpy arrays, dates and NaN included.
    return notebook_pb2.Output(mime_type=PLOTLY_MIME, json=json_value(figure.to_json()))


def _altair_output(chart: Any) -> notebook_pb2.Output:
    # The chart's own _repr_mimebundle_ depends on the active renderer (HTML
    # with CDN scripts by default); the spec is what a front end can render.
    altair = sys.modules["altair"]
    major = str(getattr(altair, "SCHEMA_VERSION", "v5")).lstrip("v").split(".")[0]
    return notebook_pb2.Output(
        mime_type=f"application/vnd.vegalite.v{major}+json",
        json=json_value(chart.to_dict()),
    )


def _plain_index(index: pd.Index[Any]) -> bool:
    """A default 0, 1, 2, ... index, which says nothing worth a column."""
    pandas = sys.modules["pandas"]
    return (
        isinstance(index, pandas.RangeIndex)
        and index.name is None
        and index.start == 0
        and index.step == 1
    )


def _with_index(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with its index turned into leading columns."""
    try:
        return frame.reset_index(allow_duplicates=True)
    except (ValueError, TypeError):
        return frame


def _column_name(name: object) -> str:
    if isinstance(name, tuple):
        return " / ".join(str(part) for part in name)
    return str(name)


# -- the display protocol ------------------------------------------------------


def _from_bundle(obj: object) -> notebook_pb2.Output:
    bundle = _mime_bundle(obj)
    if "text/plain" not in bundle:
        bundle["text/plain"] = safe_repr(obj)
    for matches in PRIORITY:
        for mime, data in bundle.items():
            if not matches(mime):
                continue
            try:
                output = _output(mime, data)
            except (ValueError, TypeError, binascii.Error):
                continue
            output.alternatives.update(
                {
                    other: _cut(text, MAX_REPR_CHARS if other == "text/plain" else None)
                    for other, text in bundle.items()
                    if other != mime and _is_text(other) and isinstance(text, str)
                }
            )
            return output
    return notebook_pb2.Output(mime_type="text/plain", text=safe_repr(obj))


def _mime_bundle(obj: object) -> dict[str, object]:
    bundle: dict[str, object] = {}
    if _has_hook(obj, "_repr_mimebundle_"):
        data = _call_hook(obj, "_repr_mimebundle_")
        if isinstance(data, Mapping):
            for mime, value in data.items():
                bundle[_DOTTED_VEGA_MIME.sub(r"\1+json", str(mime))] = value
    for method, mime in REPR_METHODS:
        if mime not in bundle and _has_hook(obj, method):
            data = _call_hook(obj, method)
            if data is not None:
                bundle[mime] = data
    return bundle


def _has_hook(obj: object, name: str) -> bool:
    # Looked up on the type, like IPython does: an object whose __getattr__
    # answers every name must not look like it implements every hook.
    return callable(getattr(type(obj), name, None))


def _call_hook(obj: object, name: str) -> object:
    method = getattr(obj, name)
    try:
        if name == "_repr_mimebundle_":
            try:
                result = method(include=None, exclude=None)
            except TypeError:
                result = method()
        else:
            result = method()
    except Exception as error:  # noqa: BLE001 - shown, then the next representation
        _report_failure(obj, name, error)
        return None
    # Hooks may return (data, metadata).
    if isinstance(result, tuple) and len(result) == 2:
        return result[0]
    return result


def _output(mime: str, data: object) -> notebook_pb2.Output:
    if mime in _BINARY_MIMES:
        if isinstance(data, str):
            data = base64.b64decode(data)
        if not isinstance(data, bytes):
            raise TypeError(f"{mime} data is {type(data).__name__}, not bytes")
        return notebook_pb2.Output(mime_type=mime, binary=data)
    if mime == "application/json" or mime.endswith("+json"):
        return notebook_pb2.Output(mime_type=mime, json=json_value(data))
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    if not isinstance(data, str):
        raise TypeError(f"{mime} data is {type(data).__name__}, not text")
    if mime == "text/plain":
        data = _cut(data, MAX_REPR_CHARS)
    return notebook_pb2.Output(mime_type=mime, text=data)


def _is_text(mime: str) -> bool:
    return mime.startswith("text/") or mime == "image/svg+xml"


def _report_failure(obj: object, hook: str, error: Exception) -> None:
    # On the cell's stderr, as IPython does: the user can fix their hook.
    sys.stderr.write(
        f"[display] {hook} for {type(obj).__name__} failed:"
        f" {type(error).__name__}: {_safe_str(error)}\n"
    )


# -- JSON conversion -------------------------------------------------------------

_UNCONVERTED: Final = object()


def _convert_library_scalar(value: object) -> object:
    """A plain Python stand-in for numpy/pandas/datetime values, or _UNCONVERTED."""
    pandas = sys.modules.get("pandas")
    if pandas is not None and (value is pandas.NaT or value is pandas.NA):
        return None
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if isinstance(value, numpy.datetime64):
            return None if numpy.isnat(value) else str(value)
        if isinstance(value, numpy.timedelta64):
            return None if numpy.isnat(value) else str(value)
        if isinstance(value, numpy.generic):
            return value.item()
        if isinstance(value, numpy.ndarray):
            return value.tolist()
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta) or (
        pandas is not None and isinstance(value, pandas.Period)
    ):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return float(value) if value.is_finite() else str(value)
    if isinstance(value, (bytes, bytearray)):
        return repr(bytes(value))
    return _UNCONVERTED


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - as safe_repr
        return f"<unprintable {type(value).__name__} object>"


def _cut(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    return text[:limit] + ELLIPSIS
