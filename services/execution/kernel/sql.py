"""SQL cells, run inside the kernel.

A SQL cell's text refers to Python values as `{name}` (the placeholder rules
are `services.shared.dataflow.sql.parse_sql`, the same the analyser uses to
find the cell's reads). Values are never pasted into the text: each
placeholder becomes a bound parameter, so `{name}` holding `O'Brien` is a
string value, not a broken (or injected) query. The one exception is a
placeholder whose value is a pandas DataFrame, which stands for a table
(`FROM {frame}`): the frame is registered under a private name and that
identifier goes into the text.

Where a query runs depends on the notebook:

* Without a database URL, in the kernel's own DuckDB (one in-memory
  connection, opened on first use). Tables the query names
  (`sql_tables`) that are DataFrames in the kernel's namespace are
  registered for the duration of the query, so `SELECT * FROM sales` reads
  the DataFrame `sales`. DuckDB's own lookup of Python variables is turned
  off: it would search the kernel's frames, not the user's namespace.
  Parameters are `$p0`, `$p1`, ...
* With a URL, through SQLAlchemy (one engine per URL, kept for the kernel's
  life) with `:p0`-style parameters. Colons in the user's text are escaped
  so that `'10:30'` or PostgreSQL's `x::int` are not taken for parameters.

Either way the result is a DataFrame (for a statement that returns no rows,
a one-row `Count` of affected rows, as DuckDB reports it). Database failures
become `SqlError`, whose message is the database's, with the URL's password
masked, and which carries no chain or kernel frames: the user needs the
database's words, not our stack.

The database libraries are imported on first use: a kernel that never runs
SQL does not pay their import time.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, quote_plus, unquote

from services.shared.patterns import QUERY_PASSWORD, URL_PASSWORD
from services.shared.redaction import mask_url_password

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, MutableMapping

    import duckdb
    import pandas as pd
    from sqlalchemy.engine import Engine

    from services.shared.dataflow.sql import SqlTemplate

FRAME_PREFIX: Final = "_reflow_frame_"


class SqlError(Exception):
    """A database refused or failed a query; the message is safe to show."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


class SqlRunner:
    """Runs SQL cells: one DuckDB connection and one engine per URL, lazily."""

    def __init__(self) -> None:
        self._duckdb: duckdb.DuckDBPyConnection | None = None
        self._engines: dict[str, Engine] = {}

    def run(
        self,
        code: str,
        result_name: str,
        database_url: str,
        namespace: MutableMapping[str, Any],
    ) -> pd.DataFrame:
        """Run `code`, bind the result to `result_name` (if any), return it."""
        # Imported here, like the database libraries: sqlglot is slow to import.
        from services.shared.dataflow.sql import parse_sql

        template = parse_sql(code)
        if database_url:
            result = self._run_on_database(template, database_url, namespace)
        else:
            result = self._run_on_duckdb(template, namespace)
        if result_name:
            namespace[result_name] = result
        return result

    def forget(self, names: Iterable[str]) -> None:
        """Drop the kernel's own DuckDB tables and views of these names.

        A cell's names are deleted before it runs again; for a SQL cell they
        include what it created (`CREATE TABLE t`), which lives in DuckDB,
        not in the namespace. Only the in-kernel DuckDB is touched: a
        notebook's own database is the user's to manage.
        """
        connection = self._duckdb
        if connection is None:
            return
        for name in names:
            if not all(part.isidentifier() for part in name.split(".")):
                continue
            quoted = ".".join(f'"{part}"' for part in name.split("."))
            for kind in ("VIEW", "TABLE"):
                try:
                    connection.execute(f"DROP {kind} IF EXISTS {quoted}")
                except Exception:  # noqa: BLE001, S112 - the other kind, or an attached db
                    continue

    def close(self) -> None:
        """Close the DuckDB connection and dispose of every engine."""
        if self._duckdb is not None:
            self._duckdb.close()
            self._duckdb = None
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()

    def _run_on_duckdb(
        self, template: SqlTemplate, namespace: Mapping[str, Any]
    ) -> pd.DataFrame:
        from services.shared.dataflow.sql import sql_tables

        frames: dict[str, object] = {}
        params: dict[str, object] = {}
        keys: dict[str, str] = {}
        parts = [template.texts[0]]
        for name, text in zip(template.names, template.texts[1:], strict=True):
            value = _placeholder_value(namespace, name)
            if _is_dataframe(value):
                alias = keys.setdefault(name, f"{FRAME_PREFIX}{len(frames)}")
                frames[alias] = value
                parts.append(f'"{alias}"')
            else:
                key = keys.setdefault(name, f"p{len(params)}")
                params[key] = _bindable(value)
                parts.append(f"${key}")
            parts.append(text)
        for table in sql_tables(template).reads:
            value = namespace.get(table)
            if _is_dataframe(value):
                frames.setdefault(table, value)
        connection = self._duckdb_connection()
        try:
            for alias, frame in frames.items():
                connection.register(alias, frame)
            try:
                cursor = connection.execute("".join(parts), params or None)
                return cursor.df()
            except Exception as error:  # noqa: BLE001 - any database failure
                raise SqlError(type(error).__name__, _message(error)) from None
        finally:
            for alias in frames:
                connection.unregister(alias)

    def _run_on_database(
        self, template: SqlTemplate, database_url: str, namespace: Mapping[str, Any]
    ) -> pd.DataFrame:
        import pandas
        import sqlalchemy

        params: dict[str, object] = {}
        keys: dict[str, str] = {}
        parts = [_escape_colons(template.texts[0])]
        for name, text in zip(template.names, template.texts[1:], strict=True):
            value = _placeholder_value(namespace, name)
            if _is_dataframe(value):
                raise TypeError(
                    f"{{{name}}} is a DataFrame: DataFrames can be queried as tables"
                    " only in the kernel's DuckDB, without a database connection"
                )
            key = keys.setdefault(name, f"p{len(keys)}")
            params[key] = _bindable(value)
            parts.append(f":{key}")
            parts.append(_escape_colons(text))
        statement = sqlalchemy.text("".join(parts))
        try:
            engine = self._engine(database_url)
            with engine.begin() as connection:
                result = connection.execute(statement, params)
                if not result.returns_rows:
                    count = result.rowcount
                    return pandas.DataFrame({"Count": [count]} if count >= 0 else {})
                columns = list(result.keys())
                rows = result.fetchall()
        except Exception as error:  # noqa: BLE001 - any driver's failure
            message = mask_secrets(_message(error), database_url)
            raise SqlError(type(error).__name__, message) from None
        return pandas.DataFrame.from_records(rows, columns=columns, coerce_float=True)

    def _duckdb_connection(self) -> duckdb.DuckDBPyConnection:
        if self._duckdb is None:
            import duckdb

            connection = duckdb.connect(":memory:")
            connection.execute("SET python_enable_replacements = false")
            self._duckdb = connection
        return self._duckdb

    def _engine(self, database_url: str) -> Engine:
        engine = self._engines.get(database_url)
        if engine is None:
            import sqlalchemy

            engine = sqlalchemy.create_engine(database_url, pool_pre_ping=True)
            self._engines[database_url] = engine
        return engine


def _placeholder_value(namespace: Mapping[str, Any], name: str) -> object:
    try:
        return namespace[name]
    except KeyError:
        raise NameError(f"name {name!r} is not defined", name=name) from None


def _is_dataframe(value: object) -> bool:
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


def _bindable(value: object) -> object:
    """numpy scalars as Python values, which every driver can bind."""
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.generic):
        return value.item()
    return value


def _escape_colons(text: str) -> str:
    # sqlalchemy.text() takes `:name` for a parameter and `\:` for a colon.
    return text.replace(":", "\\:")


def _message(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:  # noqa: BLE001 - a message that cannot be shown
        return f"<{type(error).__name__} without a printable message>"


def mask_secrets(message: str, database_url: str) -> str:
    """The message with the URL's password masked wherever it appears."""
    message = mask_url_password(message)
    for pattern in (URL_PASSWORD, QUERY_PASSWORD):
        match = pattern.search(database_url)
        if match is None or not match.group("secret"):
            continue
        secret = match.group("secret")
        plain = unquote(secret)
        for form in {secret, plain, quote(plain, safe=""), quote_plus(plain)}:
            if form:
                message = message.replace(form, "***")
    return message
