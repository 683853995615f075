"""What the model sees of a notebook: cells and run results as small JSON values.

The model reads the notebook through tool results, so this is the budget for
its context window and the boundary of what it trusts:

* Code is the user's and is shown as it is, up to ``max_code_chars``.
* Everything a cell *produced* (stdout, stderr, tracebacks, text outputs,
  JSON) was written by code, maybe code that read a web page or a file, so
  it is untrusted: capped at ``max_output_chars`` and wrapped as
  ``<cell-output untrusted="true">…</cell-output>``, with any look-alike
  closing tag inside it defused, so that it cannot end its wrapper early.
  The system prompt tells the model that what is inside is data, never
  instructions.
* Tables are shown by their schema (column names, dtypes) and row count,
  never their rows; images by their size; charts by their kind.

``fit`` keeps a list of digests within a character budget and says what it
left out, so a large notebook degrades into "ask for these cells" rather
than into a cut-off JSON document.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from google.protobuf import json_format

from reflow.notebook.v1 import notebook_pb2

if TYPE_CHECKING:
    from services.assistant.config import ToolLimits

OPEN: Final = '<cell-output untrusted="true">'
CLOSE: Final = "</cell-output>"

_IMAGES: Final = ("image/png", "image/jpeg", "image/gif")
_CHARTS: Final = ("application/vnd.vegalite", "application/vnd.plotly")


def untrusted(text: str, limit: int) -> str:
    """``text`` capped at ``limit`` characters, wrapped as untrusted output."""
    shown = text if len(text) <= limit else text[:limit]
    # Any case, any spacing: "</CELL-output >" must not close the wrapper.
    shown = _defused(shown)
    if len(text) > limit:
        shown += f"\n[... {len(text) - limit} more characters not shown]"
    return f"{OPEN}{shown}{CLOSE}"


def _defused(text: str) -> str:
    lowered = text.lower()
    if "</cell-output" not in lowered and "<cell-output" not in lowered:
        return text
    out: list[str] = []
    start = 0
    while True:
        found = lowered.find("cell-output", start)
        if found < 0:
            out.append(text[start:])
            return "".join(out)
        # "<cell-output" and "</cell-output" become "<cell_output" etc.
        out.append(text[start:found])
        out.append(text[found : found + 11].replace("-", "_"))
        start = found + 11


def status_name(status: int) -> str:
    """``CELL_STATUS_SUCCESS`` -> ``success``."""
    name = notebook_pb2.CellStatus.Name(status)  # type: ignore[arg-type]
    return name.removeprefix("CELL_STATUS_").lower()


def cell_type_name(cell_type: int) -> str:
    name = notebook_pb2.CellType.Name(cell_type)  # type: ignore[arg-type]
    return name.removeprefix("CELL_TYPE_").lower()


def cell_digest(
    cell: notebook_pb2.Cell, limits: ToolLimits, index: int | None = None
) -> dict[str, Any]:
    """A cell: id, type, code, what it reads and writes, status, last result."""
    digest: dict[str, Any] = {"id": cell.id}
    if index is not None:
        digest["index"] = index
    digest["type"] = cell_type_name(cell.type)
    digest["code"] = _capped(cell.code, limits.max_code_chars)
    if cell.result_name:
        digest["result_name"] = cell.result_name
    digest["status"] = status_name(cell.status)
    if cell.reads:
        digest["reads"] = list(cell.reads)
    if cell.writes:
        digest["writes"] = list(cell.writes)
    if cell.HasField("analysis_error"):
        digest["analysis_error"] = cell.analysis_error.message
    if cell.HasField("result"):
        digest["result"] = result_digest(cell.result, limits)
    return digest


def analysis_digest(cell: notebook_pb2.Cell) -> dict[str, Any]:
    """A cell after an edit: what the notebook service made of its code."""
    digest: dict[str, Any] = {
        "id": cell.id,
        "type": cell_type_name(cell.type),
        "status": status_name(cell.status),
        "reads": list(cell.reads),
        "writes": list(cell.writes),
    }
    if cell.result_name:
        digest["result_name"] = cell.result_name
    if cell.HasField("analysis_error"):
        digest["analysis_error"] = cell.analysis_error.message
    return digest


def result_digest(
    result: notebook_pb2.CellResult, limits: ToolLimits
) -> dict[str, Any]:
    """A run's result: status, error, printed text, outputs (all capped)."""
    cap = limits.max_output_chars
    digest: dict[str, Any] = {"status": status_name(result.status)}
    if result.blocked_by_cell_id:
        digest["blocked_by"] = result.blocked_by_cell_id
    if result.HasField("error"):
        error = result.error
        digest["error"] = {
            "type": error.type,
            "message": untrusted(error.message, cap),
            "traceback": untrusted(error.traceback, cap),
        }
    if result.stdout:
        digest["stdout"] = untrusted(result.stdout, cap)
    if result.stderr:
        digest["stderr"] = untrusted(result.stderr, cap)
    if result.output_truncated:
        digest["output_truncated"] = True
    if result.outputs:
        digest["outputs"] = [output_digest(o, limits) for o in result.outputs[:10]]
        if len(result.outputs) > 10:
            digest["outputs_not_shown"] = len(result.outputs) - 10
    return digest


def output_digest(output: notebook_pb2.Output, limits: ToolLimits) -> dict[str, Any]:
    """A rich output, by kind: table schema, text, JSON, image size, chart."""
    cap = limits.max_output_chars
    mime = output.mime_type
    kind = output.WhichOneof("data")
    if kind == "table":
        table = output.table
        return {
            "mime_type": mime,
            "table": {
                "columns": [{"name": c.name, "dtype": c.dtype} for c in table.columns],
                "total_rows": table.total_rows,
            },
        }
    if mime.startswith(_CHARTS):
        return {"mime_type": mime, "note": "a chart; its spec is not shown"}
    if kind == "binary" or mime.startswith(_IMAGES):
        return {"mime_type": mime, "size_bytes": len(output.binary)}
    if kind == "json":
        value = json_format.MessageToDict(output.json)
        return {"mime_type": mime, "json": untrusted(json.dumps(value), cap)}
    if mime == "text/html":
        # Markup is mostly noise to the model; a plain-text twin says more.
        plain = output.alternatives.get("text/plain", "")
        shown = plain or output.text
        return {"mime_type": mime, "text": untrusted(shown, cap)}
    return {"mime_type": mime, "text": untrusted(output.text, cap)}


def fit(
    digests: list[dict[str, Any]], budget_chars: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """The digests that fit in ``budget_chars`` of JSON, and the ids left out."""
    kept: list[dict[str, Any]] = []
    left_out: list[str] = []
    used = 0
    for digest in digests:
        size = len(json.dumps(digest))
        if used + size > budget_chars:
            left_out.append(str(digest.get("id", "")))
            continue
        kept.append(digest)
        used += size
    return kept, left_out


def _capped(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n# [... {len(text) - limit} more characters not shown]"
