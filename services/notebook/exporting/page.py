"""Notebooks as a static HTML page: every cell and its last outputs.

The page stands alone (styles inline, images as data URLs) and runs no
script; HTML a cell produced is included as it was shown in the notebook.
"""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any

from services.notebook.exporting.ipynb import table_html
from services.notebook.models import CellType

if TYPE_CHECKING:
    from collections.abc import Mapping

    from services.notebook.models import Cell

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; }
.cell { margin: 1rem 0; }
pre { background: #f6f8fa; padding: .5rem; overflow-x: auto; }
.output pre { background: none; }
.error { color: #b00020; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ddd; padding: 2px 6px; }
"""


def notebook_to_html(name: str, cells: list[Cell]) -> str:
    """The notebook as a standalone HTML page."""
    title = html.escape(name)
    body = "\n".join(_cell(cell) for cell in cells)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{_STYLE}</style></head>\n"
        f"<body><h1>{title}</h1>\n{body}\n</body></html>\n"
    )


def _cell(cell: Cell) -> str:
    if cell.type is CellType.MARKDOWN:
        return f'<div class="cell markdown"><pre>{html.escape(cell.code)}</pre></div>'
    label = f"SQL → {cell.result_name}" if cell.type is CellType.SQL else "Python"
    parts = [
        f'<div class="cell code" data-type="{cell.type.value}">',
        f'<div class="label">{html.escape(label)}</div>',
        f"<pre><code>{html.escape(cell.code)}</code></pre>",
        _outputs(cell.result),
        "</div>",
    ]
    return "\n".join(parts)


def _outputs(result: Mapping[str, Any] | None) -> str:
    if not result:
        return ""
    parts = ['<div class="output">']
    if result.get("stdout"):
        parts.append(f"<pre>{html.escape(result['stdout'])}</pre>")
    if result.get("stderr"):
        parts.append(f'<pre class="stderr">{html.escape(result["stderr"])}</pre>')
    parts += [_output(output) for output in result.get("outputs", [])]
    error = result.get("error")
    if error:
        text = error.get("traceback") or f"{error.get('type')}: {error.get('message')}"
        parts.append(f'<pre class="error">{html.escape(str(text))}</pre>')
    parts.append("</div>")
    return "\n".join(parts)


def _output(output: Mapping[str, Any]) -> str:
    mime = output.get("mimeType", "")
    if "table" in output:
        return (
            str(output.get("alternatives", {}).get("text/html"))
            if output.get("alternatives", {}).get("text/html")
            else table_html(output["table"])
        )
    if mime == "image/png" and "binary" in output:
        return f'<img src="data:image/png;base64,{output["binary"]}">'
    if mime in ("text/html", "image/svg+xml"):
        return str(output.get("text", ""))
    if "json" in output:
        return f"<pre>{html.escape(json.dumps(output['json'], indent=2))}</pre>"
    return f"<pre>{html.escape(str(output.get('text', '')))}</pre>"
