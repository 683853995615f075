"""Renaming the names a Jupyter notebook redefines, so that it runs reactively.

A Jupyter notebook runs top to bottom and may bind a name in many cells
(`x = ...` three times, `fig, ax = plt.subplots()` in every plot cell);
Reflow allows one definer per name. Each definition of a name several cells
define is a *version*, alive until the next definer:

* A version no later cell reads (before the next definition, the next
  definer itself included, as `pop = pop.reindex(...)` reads the previous
  `pop`) is made private to its cell: `fig` becomes `_fig`. When no version
  is read elsewhere, the last keeps its name (one definer is allowed).
* The other versions are public: the first keeps the name, later ones get
  fresh names (`x_2`, `x_3`), and every later read is rewritten to the
  version current at that point of the notebook.
* A cell that reads the previous version and defines the next one
  (self-rebinding) is rewritten in place when the first definition is a
  plain top-level assignment (`pop_2 = pop.reindex(index)`: reads before it
  and in its value keep the old name); otherwise (`x += 1`, a loop) it gets
  a first line `x_2 = x` and uses `x_2` throughout, as Python would.

Identifiers are rewritten where they stand, so comments and formatting stay.
SQL cells take part through their result name and the tables they read.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from services.notebook.importing.occurrences import Occurrence, Use, find_occurrences
from services.notebook.models import CellType
from services.shared.dataflow import CellAnalysis, analyse_python, analyse_sql

if TYPE_CHECKING:
    from services.notebook.importing.sources import SourceCell

# Python identifiers, non-ASCII ones included (`é = 1` is valid Python).
_WORD = re.compile(r"(?!\d)\w+")


@dataclass(frozen=True)
class Renamed:
    """A cell after renaming, and what was renamed, for the notes."""

    cell: SourceCell
    notes: tuple[str, ...]


def analyse(cell: SourceCell) -> CellAnalysis:
    """The dataflow analysis of a source cell (markdown: nothing)."""
    if cell.type is CellType.PYTHON:
        return analyse_python(cell.code)
    if cell.type is CellType.SQL:
        return analyse_sql(cell.code, cell.result_name)
    return CellAnalysis()


def rename_redefinitions(cells: list[SourceCell]) -> list[Renamed]:
    """Every cell with redefined names renamed (see the module docstring)."""
    analyses = [analyse(cell) for cell in cells]
    incoming = [_reads_incoming(c, a) for c, a in zip(cells, analyses, strict=True)]
    taken = {word for cell in cells for word in _WORD.findall(cell.code)}
    names = _version_names(analyses, incoming, taken)
    current: dict[str, str] = {}
    renamed: list[Renamed] = []
    for index, cell in enumerate(cells):
        writes = {n: new for (n, i), new in names.items() if i == index}
        reads = {
            n: current.get(n, n)
            for n in incoming[index]
            if n in writes or current.get(n, n) != n
        }
        renamed.append(_rewrite(cell, reads, writes, current))
        # A private version is never read elsewhere: later reads keep the
        # public one.
        current.update({n: new for n, new in writes.items() if not new.startswith("_")})
    return renamed


def _reads_incoming(cell: SourceCell, analysis: CellAnalysis) -> set[str]:
    """Names the cell reads from earlier cells. Unlike the analyser's reads,
    `x += 1` at top level counts: in Jupyter it reads the previous `x`."""
    reads = set(analysis.reads)
    if cell.type is CellType.PYTHON and not analysis.error:
        tree = ast.parse(cell.code)
        for name in analysis.writes:
            found = find_occurrences(tree, cell.code, name)
            if found and found[0].use is Use.AUGMENT:
                reads.add(name)
    return reads


def _version_names(
    analyses: list[CellAnalysis], incoming: list[set[str]], taken: set[str]
) -> dict[tuple[str, int], str]:
    """The name of every version of every name defined by several cells,
    keyed by (name, defining cell index); unchanged names are left out."""
    definers: dict[str, list[int]] = {}
    for index, analysis in enumerate(analyses):
        for name in analysis.writes:
            definers.setdefault(name, []).append(index)
    names: dict[tuple[str, int], str] = {}
    for name, cells in definers.items():
        if len(cells) < 2:
            continue
        public = 0
        for position, index in enumerate(cells):
            end = cells[position + 1] if position + 1 < len(cells) else len(analyses)
            later = range(index + 1, min(end + 1, len(analyses)))
            read_later = any(name in incoming[c] for c in later)
            if not read_later:
                # Private names never link cells: `_fig` may be in every cell.
                names[(name, index)] = f"_{name}"
                continue
            public += 1
            if public > 1:
                names[(name, index)] = _fresh(f"{name}_{public}", taken)
        if not public:
            # Privacy is needed only for all definers but one: the last
            # keeps the name, so a notebook's final state reads as before.
            del names[(name, cells[-1])]
    return names


def _fresh(candidate: str, taken: set[str]) -> str:
    name, suffix = candidate, 2
    while name in taken:
        name = f"{candidate}_{suffix}"
        suffix += 1
    taken.add(name)
    return name


def _rewrite(
    cell: SourceCell,
    reads: dict[str, str],
    writes: dict[str, str],
    current: dict[str, str],
) -> Renamed:
    if not reads and not writes:
        return Renamed(cell, ())
    if cell.type is CellType.SQL:
        return _rewrite_sql(cell, reads, writes)
    tree = ast.parse(cell.code)
    edits: list[tuple[Occurrence, str]] = []
    prefix: list[str] = []
    notes: list[str] = []
    for name in sorted(reads.keys() | writes.keys()):
        found = find_occurrences(tree, cell.code, name)
        old = reads.get(name, current.get(name, name))
        new = writes.get(name)
        if new is None:
            edits += [(o, old) for o in found]
            notes.append(f"reads `{old}` where it read `{name}`")
            continue
        if new.startswith("_"):
            new = _private_name(name, cell.code)
        notes.append(_write_note(name, new))
        if name not in reads:
            edits += [(o, new) for o in found]
        elif _is_straight(tree, found):
            binding = next(o.statement for o in found if o.use is Use.STORE)
            edits += [(o, _version(o, binding, old, new)) for o in found]
        else:
            prefix.append(f"{new} = {old}")
            edits += [(o, new) for o in found]
    code = _apply(cell.code, edits)
    if prefix:
        code = "\n".join(prefix) + "\n" + code
    return Renamed(replace(cell, code=code), tuple(notes))


def _private_name(name: str, code: str) -> str:
    taken = set(_WORD.findall(code))
    return _fresh(f"_{name}", taken)


def _write_note(name: str, new: str) -> str:
    if new.startswith("_") and not name.startswith("_"):
        return f"`{name}` is private to this cell (`{new}`): other cells define it too"
    return f"`{name}` is redefined here: renamed `{new}`"


def _is_straight(tree: ast.Module, found: list[Occurrence]) -> bool:
    """Whether the first definition is a plain top-level assignment, so the
    previous version can be read up to it and the new one after it."""
    stores = [o for o in found if o.use is not Use.LOAD]
    if not stores or stores[0].use is Use.AUGMENT:
        return False
    statement = tree.body[stores[0].statement]
    return isinstance(statement, ast.Assign) and all(
        isinstance(target, ast.Name | ast.Tuple) for target in statement.targets
    )


def _version(occurrence: Occurrence, binding: int, old: str, new: str) -> str:
    if occurrence.use is Use.LOAD and occurrence.statement <= binding:
        return old
    return new


def _apply(code: str, edits: list[tuple[Occurrence, str]]) -> str:
    lines = code.split("\n")
    for occurrence, new in sorted(
        edits, key=lambda e: (e[0].line, e[0].column), reverse=True
    ):
        text = lines[occurrence.line - 1]
        match = _WORD.match(text, occurrence.column)
        assert match is not None, "an occurrence points at an identifier"
        old = match.group()
        if old == new:
            continue
        spelled = f"{old} as {new}" if occurrence.needs_alias else new
        lines[occurrence.line - 1] = (
            text[: match.start()] + spelled + text[match.end() :]
        )
    return "\n".join(lines)


def _rewrite_sql(
    cell: SourceCell, reads: dict[str, str], writes: dict[str, str]
) -> Renamed:
    code = cell.code
    notes = []
    for name, new in reads.items():
        code = re.sub(rf"\b{re.escape(name)}\b", new, code)
        notes.append(f"reads `{new}` where it read `{name}`")
    result_name = writes.get(cell.result_name, cell.result_name)
    if result_name != cell.result_name:
        notes.append(_write_note(cell.result_name, result_name))
    if result_name.startswith("_"):
        # A SQL result no other cell reads is only shown, not bound.
        result_name = ""
    return Renamed(replace(cell, code=code, result_name=result_name), tuple(notes))
