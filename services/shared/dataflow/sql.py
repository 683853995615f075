"""The `{name}` placeholders of a SQL cell.

A SQL cell refers to Python values as `{name}`; the kernel binds each one as
a query parameter, never by pasting text. The dependency analyser and the
kernel must agree on what counts as a placeholder, so both use `parse_sql`:

* `{identifier}` is a placeholder; `{{` and `}}` are literal braces.
* Nothing inside a quoted string or identifier (`'...'` with `''` as an
  escaped quote, `"..."`, `` `...` ``) or a comment (`-- ...` to the end of
  the line, `/* ... */`) is a placeholder, and braces there are kept as
  written. An unterminated quote or comment runs to the end of the text.
* Any other brace is literal text, left for the database to judge.

Besides placeholders, a query reads the tables it names: without a database
connection the kernel's DuckDB resolves `FROM sales` to the DataFrame
`sales`, so `sql_tables` reports the tables a query reads (not the names its
own CTEs define) for the analyser to treat as reads, as marimo does. A
qualified table stays qualified: `FROM sales.q1` reads `sales.q1`, which no
Python variable can define, not a variable `sales`. The statements that
create something write it: `CREATE [OR REPLACE] TABLE|VIEW name` (qualified
or not; the created table is not also a read) and `ATTACH ... AS db`.
Parsing is sqlglot's; a query it cannot parse reads and writes no tables
rather than failing analysis, since the database, not us, is the judge of
its SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

_TOKEN = re.compile(
    r"""
      (?P<verbatim>
          '(?:[^']|'')*'?
        | "(?:[^"]|"")*"?
        | `[^`]*`?
        | --[^\n]*
        | /\*.*?(?:\*/|\Z)
      )
    | (?P<escape>\{\{|\}\})
    | \{(?P<name>[^\W\d]\w*)\}
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class SqlTemplate:
    """SQL text split around its placeholders.

    The query is `texts[0]`, the value of `names[0]`, `texts[1]`, ... so
    `texts` has one more item than `names`; escaped braces in `texts` are
    already unescaped. A name may appear more than once.
    """

    texts: tuple[str, ...]
    names: tuple[str, ...]


def parse_sql(code: str) -> SqlTemplate:
    """Split `code` into literal text and `{name}` placeholders."""
    texts: list[str] = []
    names: list[str] = []
    pending: list[str] = []
    position = 0
    for match in _TOKEN.finditer(code):
        pending.append(code[position : match.start()])
        position = match.end()
        name = match.group("name")
        if name is not None and name.isidentifier():
            texts.append("".join(pending))
            names.append(name)
            pending = []
        elif match.group("escape") is not None:
            pending.append(match.group("escape")[0])
        else:
            pending.append(match.group(0))
    pending.append(code[position:])
    texts.append("".join(pending))
    return SqlTemplate(texts=tuple(texts), names=tuple(names))


@dataclass(frozen=True)
class SqlTables:
    """The tables (and attached databases) a query reads and creates."""

    reads: frozenset[str] = frozenset()
    writes: frozenset[str] = frozenset()


def sql_tables(template: SqlTemplate) -> SqlTables:
    """The tables the query reads and those it creates, minus its CTE names."""
    # A placeholder may stand for a value or a table (`FROM {frame}`); a
    # private identifier parses in both places and never becomes a read.
    sql = "_reflow_placeholder".join(template.texts)
    try:
        statements = sqlglot.parse(sql, read="duckdb")
    except SqlglotError:
        return SqlTables()
    reads: set[str] = set()
    writes: set[str] = set()
    for statement in statements:
        if statement is None:
            continue
        created = _created(statement)
        if created is not None:
            writes.add(_qualified(created))
        if isinstance(statement, exp.Attach):
            alias = statement.this
            if isinstance(alias, exp.Alias) and alias.alias:
                writes.add(alias.alias)
        defined = {cte.alias_or_name for cte in statement.find_all(exp.CTE)}
        for table in statement.find_all(exp.Table):
            if table is created or not table.name or table.name in defined:
                continue
            reads.add(_qualified(table))
    return SqlTables(reads=frozenset(reads - writes), writes=frozenset(writes))


def _created(statement: exp.Expr) -> exp.Table | None:
    if not isinstance(statement, exp.Create):
        return None
    if str(statement.args.get("kind") or "").upper() not in {"TABLE", "VIEW"}:
        return None
    target = statement.this
    if isinstance(target, exp.Schema):  # `CREATE TABLE t (a INT)`
        target = target.this
    return target if isinstance(target, exp.Table) else None


def _qualified(table: exp.Table) -> str:
    return ".".join(part for part in (table.catalog, table.db, table.name) if part)
