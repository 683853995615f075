"""SQL cells written as Python, for the formats that have no SQL cell.

Reflow runs SQL cells in DuckDB over the notebook's DataFrames, binding
`{name}` placeholders as parameters; the same query through the `duckdb`
module does that in a plain Python process or a Jupyter kernel (DuckDB finds
DataFrames by their variable names).
"""

from __future__ import annotations

import re

_PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*)\}")


def sql_as_python(query: str, result_name: str) -> str:
    """Python code that runs `query` and binds (or shows) its result."""
    names = list(dict.fromkeys(_PLACEHOLDER.findall(query)))
    text = _PLACEHOLDER.sub(r"$\1", query).replace('"""', '\\"\\"\\"')
    if names:
        parameters = ", ".join(f'"{n}": {n}' for n in names)
        call = f'duckdb.execute("""{text}""", {{{parameters}}}).df()'
    else:
        call = f'duckdb.sql("""{text}""").df()'
    target = f"{result_name} = " if result_name else ""
    shown = f"\n{result_name}" if result_name else ""
    return f"import duckdb\n\n{target}{call}{shown}"


def sql_from_python(code: str) -> str | None:
    """The query of code `sql_as_python` wrote, placeholders restored."""
    match = re.search(r'duckdb\.(?:sql|execute)\("""(.*?)"""', code, re.S)
    if match is None:
        return None
    query = match.group(1).replace('\\"\\"\\"', '"""')
    return re.sub(r"\$([A-Za-z_]\w*)", r"{\1}", query)
