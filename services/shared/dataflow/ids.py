"""Identifiers used by the dependency graph.

A cell id is an opaque string chosen by the notebook service; the graph only
compares and stores it. It is a `NewType` so that a cell id and a variable
name, both plain strings at run time, cannot be mixed up under mypy.
"""

from __future__ import annotations

from typing import NewType

CellId = NewType("CellId", str)
