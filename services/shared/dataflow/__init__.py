"""Static dependency analysis of notebook cells, and the graph it induces.

`analyse_python` / `analyse_sql` turn one cell's code into a `CellAnalysis`
(the global names it writes and reads); a `DependencyGraph` links the cells
of a notebook by those names and answers what must run, in which order, and
which cells cannot run (`GraphError`s). Pure Python, no I/O, no protobuf:
both the notebook service (to report analysis) and the execution service (to
schedule runs) use it.
"""

from __future__ import annotations

from services.shared.dataflow.analysis import (
    BUILTINS,
    CellAnalysis,
    analyse_python,
    analyse_sql,
    imports_only,
    is_private,
)
from services.shared.dataflow.errors import (
    CellAnalysisError,
    Contest,
    CycleError,
    GraphError,
    MultipleDefinitionError,
)
from services.shared.dataflow.graph import DependencyGraph
from services.shared.dataflow.ids import CellId
from services.shared.dataflow.sql import SqlTemplate, parse_sql

__all__ = [
    "BUILTINS",
    "CellAnalysis",
    "CellAnalysisError",
    "CellId",
    "Contest",
    "CycleError",
    "DependencyGraph",
    "GraphError",
    "MultipleDefinitionError",
    "SqlTemplate",
    "analyse_python",
    "analyse_sql",
    "imports_only",
    "is_private",
    "parse_sql",
]
