"""IPython magics and shell escapes, turned into what Reflow runs.

Only a cell that Python cannot parse is looked at: a line starting with `%`
or `!` is never valid Python, but such text may sit inside a string of a
cell that parses. `%%sql` cells become SQL cells, `%matplotlib` is dropped
(figures are shown without it), `%time`/`%%time` keep the code they time;
every other magic is commented out, so the cell still shows it.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from services.notebook.importing.sources import SourceCell
from services.notebook.models import CellType

_TIMED = re.compile(r"^(?P<indent>\s*)%(?:time|timeit)\s+(?P<code>\S.*)$")
_SQL_RESULT = re.compile(r"^\s*(?P<name>[A-Za-z_]\w*)\s*<<\s*(?P<rest>.*)$")


@dataclass(frozen=True)
class Converted:
    """A cell with its magics handled, and what was done, for the notes."""

    cell: SourceCell
    notes: tuple[str, ...]


def convert_magics(cell: SourceCell) -> Converted:
    """The cell with IPython syntax replaced by a Reflow equivalent or commented."""
    if cell.type is not CellType.PYTHON or _parses(cell.code):
        return Converted(cell, ())
    lines = cell.code.split("\n")
    first = lines[0].strip()
    if first.startswith("%%"):
        return _cell_magic(cell, first, lines[1:])
    kept: list[str] = []
    notes: list[str] = []
    for line in lines:
        replaced, note = _line(line)
        if replaced is not None:
            kept.append(replaced)
        if note:
            notes.append(note)
    return Converted(_with_code(cell, "\n".join(kept)), tuple(notes))


def _line(line: str) -> tuple[str | None, str | None]:
    """The line to keep (None drops it) and the note about it."""
    stripped = line.strip()
    if stripped.startswith("%matplotlib"):
        return None, f"dropped `{stripped}`: Reflow shows figures without it"
    timed = _TIMED.match(line)
    if timed:
        return (
            timed.group("indent") + timed.group("code"),
            f"`{stripped}` runs its code without timing it",
        )
    if _is_magic(stripped):
        indent = line[: len(line) - len(line.lstrip())]
        return (
            f"{indent}# {stripped}",
            f"commented out `{stripped}`: IPython syntax Reflow does not run",
        )
    return line, None


def _is_magic(stripped: str) -> bool:
    if stripped.startswith(("%", "!")):
        return True
    if stripped.endswith("?") and not stripped.startswith("#"):
        return True
    # `files = !ls`, `t = %timeit -o f()`
    return bool(re.match(r"^[\w, ]+=\s*[%!]", stripped))


def _cell_magic(cell: SourceCell, first: str, body: list[str]) -> Converted:
    name, _, argument = first[2:].partition(" ")
    text = "\n".join(body).strip("\n")
    if name == "sql":
        result = _SQL_RESULT.match(argument)
        result_name = result.group("name") if result else ""
        note = "`%%sql` became a SQL cell" + (
            f" bound to `{result_name}`" if result_name else ""
        )
        return Converted(
            SourceCell(CellType.SQL, text, result_name, cell.outputs), (note,)
        )
    if name in ("time", "timeit", "capture"):
        converted = convert_magics(_with_code(cell, text))
        note = f"dropped `%%{name}`: the cell runs its code without it"
        return Converted(converted.cell, (note, *converted.notes))
    commented = "\n".join(f"# {line}" if line else "#" for line in [first, *body])
    return Converted(
        _with_code(cell, commented),
        (f"commented out the `%%{name}` cell: Reflow has no such cell magic",),
    )


def _with_code(cell: SourceCell, code: str) -> SourceCell:
    return SourceCell(
        cell.type, code, cell.result_name, cell.outputs, cell.execution_count
    )


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True
