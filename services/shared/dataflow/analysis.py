"""What one cell reads and writes: the input to the dependency graph.

`analyse_python` and `analyse_sql` never raise on bad code: a syntax error,
an `import *` or an invalid SQL result name comes back as
`CellAnalysis.error`, with no reads and no writes, so the notebook can store
the cell and show the error next to it.

Rules (marimo's, with the choices below where marimo is silent or loose):

* Writes are the globals the cell binds; reads are the globals it uses
  without binding them first (see `visitor.py` for the scoping model).
* Names starting with one `_` are private to the cell: never reads or
  writes (`_x`, and marimo's `__` alone). Dunder names (`__all__`) and
  other names starting with two underscores are ordinary public names.
* Builtins the cell uses without binding are kept apart in `builtin_reads`:
  they are not dependencies, except on a cell that rebinds the builtin (as in
  marimo, `print = log` in one cell reroutes `print` in the others).
* `x: int` with no value is a write, as in marimo (the annotation declares
  the cell owns `x`), although Python binds nothing.
* `del x` reads `x` when the cell did not bind it first, and is never a
  write; such a name is also among the cell's `deletes`, which the graph
  orders after every other reader of `x`. A name the cell binds and later
  deletes stays a write (marimo).
* `x += 1` at the top level writes `x` and does not read it (marimo).
* `except E as e` binds nothing: Python deletes `e` when the handler ends.
* `from __future__ import ...` binds nothing.
* A name used in a function, lambda or generator-expression body is not a
  read if the cell binds it anywhere (the body runs later); class bodies and
  list, set and dict comprehensions run at once and read in order.
* Cells may use `await`, `async for` and `async with` at top level: the
  kernel must compile cells with `PyCF_ALLOW_TOP_LEVEL_AWAIT` too. Errors
  Python only finds when compiling (`return` outside a function, `nonlocal`
  at top level) are analysis errors as well.
"""

from __future__ import annotations

import ast
import builtins
import functools
import keyword
from dataclasses import dataclass

from services.shared.dataflow.sql import parse_sql, sql_tables
from services.shared.dataflow.visitor import CellNames, ImportStarError, find_names

# `display` is provided by every kernel (as in IPython), so like a builtin it
# links a cell only to a cell that rebinds it.
BUILTINS = frozenset(dir(builtins)) | {"display"}

_COMPILE_FLAGS = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT


@dataclass(frozen=True)
class CellAnalysis:
    """The global names one cell writes and reads, or why they are unknown.

    `builtin_reads` are builtins used but not bound by the cell; they link
    the cell only to a cell that rebinds one of them. `deletes` are the
    reads the cell deletes (`del x` at the top level).
    """

    writes: frozenset[str] = frozenset()
    reads: frozenset[str] = frozenset()
    error: str | None = None
    builtin_reads: frozenset[str] = frozenset()
    deletes: frozenset[str] = frozenset()

    @classmethod
    def failed(cls, error: str) -> CellAnalysis:
        """An analysis that found `error` and therefore no names."""
        return cls(error=error)


def analyse_python(code: str) -> CellAnalysis:
    """Find the globals a Python cell writes and reads."""
    try:
        tree = ast.parse(code, "<cell>")
        # Compiling finds what the parser accepts but Python rejects
        # (`return` or `nonlocal` at top level, `await` in a sync function).
        compile(tree, "<cell>", "exec", flags=_COMPILE_FLAGS, dont_inherit=True)
        names = find_names(tree)
    except SyntaxError as error:
        return CellAnalysis.failed(_describe_syntax_error(error))
    except ValueError as error:  # null bytes in the source, before Python 3.12
        return CellAnalysis.failed(f"syntax error: {error}")
    except ImportStarError as error:
        return CellAnalysis.failed(str(error))
    except RecursionError:
        return CellAnalysis.failed("the cell is nested too deeply to analyse")
    return _classify(names)


def analyse_sql(code: str, result_name: str) -> CellAnalysis:
    """Find the names a SQL cell reads (`{name}` and the tables it queries)
    and writes (`result_name`).

    An empty `result_name` means the result is only displayed, not bound.
    """
    if result_name and not _is_identifier(result_name):
        return CellAnalysis.failed(
            f"invalid result name {result_name!r}: it must be a Python identifier"
        )
    template = parse_sql(code)
    tables = sql_tables(template)
    referenced = set(template.names) | tables.reads
    public = {name for name in referenced if _is_public_sql_name(name)}
    writes = {name for name in tables.writes if _is_public_sql_name(name)}
    if result_name and not is_private(result_name):
        writes.add(result_name)
    return CellAnalysis(
        writes=frozenset(writes),
        reads=frozenset(public - BUILTINS - writes),
        builtin_reads=frozenset(public & BUILTINS),
    )


def is_private(name: str) -> bool:
    """Whether `name` is private to its cell (one leading underscore, or `__`)."""
    return name == "__" or (name.startswith("_") and not name.startswith("__"))


@functools.lru_cache(maxsize=1024)
def imports_only(code: str) -> bool:
    """Whether a Python cell is nothing but import statements (and parses).

    Asked of every re-run cell on every run: remembered per code."""
    try:
        body = ast.parse(code).body
    except (SyntaxError, ValueError, RecursionError):
        return False
    return bool(body) and all(
        isinstance(node, ast.Import | ast.ImportFrom) for node in body
    )


def _is_public_sql_name(name: str) -> bool:
    # A qualified table (`schema.table`) is one name; every part must be an
    # identifier, and the table itself must not be private.
    parts = name.split(".")
    return all(part.isidentifier() for part in parts) and not is_private(parts[-1])


def _is_identifier(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def _classify(names: CellNames) -> CellAnalysis:
    writes = {name for name in names.writes if not is_private(name)}
    # Deferred loads (function bodies) are satisfied by a binding anywhere in
    # the cell, private ones included.
    used = names.eager | (names.deferred - names.writes)
    public = {name for name in used if not is_private(name)}
    return CellAnalysis(
        writes=frozenset(writes),
        reads=frozenset(public - BUILTINS),
        builtin_reads=frozenset(public & BUILTINS),
        deletes=frozenset(public & names.deleted),
    )


def _describe_syntax_error(error: SyntaxError) -> str:
    where = f" at line {error.lineno}" if error.lineno else ""
    return f"syntax error{where}: {error.msg}"
