"""Jupyter outputs as a stored Reflow result, kept until the cell runs.

The result is the canonical proto-JSON of `reflow.notebook.v1.CellResult`
(models.py keeps results that way); the cell itself is STALE, so the page
shows the old outputs as out of date.
"""

from __future__ import annotations

from typing import Any

# Richest first: the primary representation of a display; the others become
# alternatives.
_PREFERRED = (
    "application/vnd.plotly.v1+json",
    "application/vnd.vegalite.v5+json",
    "application/vnd.vegalite.v6+json",
    "image/png",
    "image/svg+xml",
    "text/html",
    "text/markdown",
    "application/json",
    "text/plain",
)
_JSON = {
    "application/json",
    "application/vnd.plotly.v1+json",
    "application/vnd.vegalite.v5+json",
    "application/vnd.vegalite.v6+json",
}


def result_from_outputs(
    outputs: tuple[dict[str, Any], ...], execution_count: int | None
) -> dict[str, Any] | None:
    """The stored result for a Jupyter cell's outputs, or None when it has none."""
    if not outputs:
        return None
    stdout: list[str] = []
    stderr: list[str] = []
    rich: list[dict[str, Any]] = []
    result: dict[str, Any] = {"status": "CELL_STATUS_SUCCESS"}
    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream":
            target = stderr if output.get("name") == "stderr" else stdout
            target.append(_text(output.get("text", "")))
        elif kind in ("execute_result", "display_data"):
            converted = _display(output.get("data", {}))
            if converted is not None:
                rich.append(converted)
        elif kind == "error":
            result["status"] = "CELL_STATUS_ERROR"
            result["error"] = {
                "type": output.get("ename", ""),
                "message": output.get("evalue", ""),
                "traceback": "\n".join(output.get("traceback", [])),
            }
    if stdout:
        result["stdout"] = "".join(stdout)
    if stderr:
        result["stderr"] = "".join(stderr)
    if rich:
        result["outputs"] = rich
    if execution_count:
        result["executionCount"] = str(execution_count)
    return result


def _text(value: object) -> str:
    if isinstance(value, list):
        return "".join(str(part) for part in value)
    return str(value)


def _display(data: dict[str, Any]) -> dict[str, Any] | None:
    mimes = [m for m in _PREFERRED if m in data]
    if not mimes:
        return None
    primary = mimes[0]
    output: dict[str, Any] = {"mimeType": primary}
    if primary in _JSON:
        output["json"] = data[primary]
    elif primary == "image/png":
        # proto-JSON spells bytes as base64, which is what Jupyter stores.
        output["binary"] = _text(data[primary]).replace("\n", "")
    else:
        output["text"] = _text(data[primary])
    alternatives = {m: _text(data[m]) for m in mimes[1:] if m not in _JSON}
    if alternatives:
        output["alternatives"] = alternatives
    return output
