"""Where a cell mentions a global name: the spots a rename rewrites.

The dataflow analyser (services.shared.dataflow) decides which names a cell
reads and writes; this module only finds, for a name already known to be a
global of the cell, every place in the source that refers to it, so that the
importer can rewrite those identifiers in place and keep the rest of the
text (comments, formatting) as it was. Names a function, lambda or
comprehension binds for itself are locals there and are left alone.
"""

from __future__ import annotations

import ast
import enum
import re
from dataclasses import dataclass


class Use(enum.Enum):
    """How an occurrence uses the name."""

    LOAD = "load"
    STORE = "store"
    AUGMENT = "augment"


@dataclass(frozen=True)
class Occurrence:
    """One mention of a global name: 1-based line, character column."""

    line: int
    column: int
    use: Use
    # The index of the top-level statement it is in.
    statement: int
    # True when the identifier is written `old` but must become `old as new`
    # (`import numpy`, `from m import y`).
    needs_alias: bool = False


def find_occurrences(tree: ast.Module, source: str, name: str) -> list[Occurrence]:
    """Every place the cell refers to the global `name`, in source order."""
    lines = source.split("\n")
    finder = _Finder(name, lines)
    for index, statement in enumerate(tree.body):
        finder.statement = index
        finder.visit(statement)
    return sorted(finder.found, key=lambda o: (o.line, o.column))


def _char_column(lines: list[str], line: int, byte_column: int) -> int:
    text = lines[line - 1].encode()[:byte_column]
    return len(text.decode(errors="replace"))


class _Finder(ast.NodeVisitor):
    def __init__(self, name: str, lines: list[str]) -> None:
        self.name = name
        self.lines = lines
        self.found: list[Occurrence] = []
        self.statement = 0
        # Nesting depth inside scopes that bind `name` for themselves.
        self._shadowed = 0

    def _add(self, line: int, byte_column: int, use: Use, alias: bool = False) -> None:
        if self._shadowed:
            return
        column = _char_column(self.lines, line, byte_column)
        self.found.append(Occurrence(line, column, use, self.statement, alias))

    def _find_in_line(
        self, line: int, byte_start: int, pattern: str, within: ast.AST | None = None
    ) -> None:
        text = self.lines[line - 1]
        start = _char_column(self.lines, line, byte_start)
        if isinstance(within, ast.pattern) and within.end_col_offset is not None:
            # The name ends the pattern: search its last line's span only.
            end = _char_column(self.lines, line, within.end_col_offset)
            first = within.col_offset if within.lineno == line else 0
            start = _char_column(self.lines, line, first)
            text = text[:end]
        match = re.compile(pattern).search(text, start)
        if match:
            column = match.start("name")
            self.found.append(Occurrence(line, column, Use.STORE, self.statement))

    def visit_Name(self, node: ast.Name) -> None:
        if node.id != self.name:
            return
        use = Use.LOAD if isinstance(node.ctx, ast.Load) else Use.STORE
        self._add(node.lineno, node.col_offset, use)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name) and node.target.id == self.name:
            self._add(node.target.lineno, node.target.col_offset, Use.AUGMENT)
        else:
            self.visit(node.target)
        self.visit(node.value)

    def visit_alias(self, node: ast.alias) -> None:
        bound = node.asname or node.name.split(".")[0]
        if bound != self.name or self._shadowed:
            return
        text = self.lines[node.lineno - 1]
        start = _char_column(self.lines, node.lineno, node.col_offset)
        if node.asname:
            match = re.compile(rf"\bas\s+(?P<name>{re.escape(bound)})\b").search(
                text, start
            )
            if match:
                column = match.start("name")
                self.found.append(
                    Occurrence(node.lineno, column, Use.STORE, self.statement)
                )
        elif "." not in node.name:
            self.found.append(
                Occurrence(node.lineno, start, Use.STORE, self.statement, True)
            )

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        # `case x` and `case [y] as x` bind x with no Name node.
        if node.pattern is not None:
            self.visit(node.pattern)
        if node.name == self.name and not self._shadowed:
            pattern = rf"(?P<name>{re.escape(self.name)})\b"
            if node.pattern is not None:
                pattern = r"\bas\s+" + pattern
            self._find_in_line(node.end_lineno or node.lineno, 0, pattern, node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name == self.name and not self._shadowed:
            pattern = rf"\*\s*(?P<name>{re.escape(self.name)})\b"
            self._find_in_line(node.lineno, node.col_offset, pattern)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        for child in [*node.keys, *node.patterns]:
            self.visit(child)
        if node.rest == self.name and not self._shadowed:
            pattern = rf"\*\*\s*(?P<name>{re.escape(self.name)})\b"
            self._find_in_line(node.lineno, node.col_offset, pattern)

    def visit_Global(self, node: ast.Global) -> None:
        if self.name in node.names:
            self._find_in_line(
                node.lineno,
                node.col_offset,
                rf"\b(?P<name>{re.escape(self.name)})\b",
            )

    def _visit_definition(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    ) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        if node.name == self.name and not self._shadowed:
            keyword = "class" if isinstance(node, ast.ClassDef) else "def"
            self._find_in_line(
                node.lineno,
                node.col_offset,
                rf"\b{keyword}\s+(?P<name>{re.escape(self.name)})\b",
            )

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._visit_function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._visit_function(node)

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._visit_definition(node)
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        self._visit_scope(node.body, _binds_locally(node, self.name))

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        self._visit_scope([node.body], self.name in _parameters(node.args))

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._visit_definition(node)
        for base in [*node.bases, *node.keywords]:
            self.visit(base)
        self._visit_scope(node.body, False)

    def _visit_comprehension(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp
    ) -> None:
        # The first iterable is evaluated in the enclosing scope.
        self.visit(node.generators[0].iter)
        targets = {
            n.id
            for generator in node.generators
            for n in ast.walk(generator.target)
            if isinstance(n, ast.Name)
        }
        shadowed = self.name in targets
        self._shadowed += shadowed
        for index, generator in enumerate(node.generators):
            if index:
                self.visit(generator.iter)
            for condition in generator.ifs:
                self.visit(condition)
        if isinstance(node, ast.DictComp):
            self.visit(node.key)
            self.visit(node.value)
        else:
            self.visit(node.elt)
        self._shadowed -= shadowed

    visit_ListComp = _visit_comprehension
    visit_SetComp = _visit_comprehension
    visit_GeneratorExp = _visit_comprehension
    visit_DictComp = _visit_comprehension

    def _visit_scope(self, body: list[ast.stmt] | list[ast.expr], local: bool) -> None:
        self._shadowed += local
        for node in body:
            self.visit(node)
        self._shadowed -= local


def _parameters(args: ast.arguments) -> set[str]:
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    every += [a for a in (args.vararg, args.kwarg) if a is not None]
    return {a.arg for a in every}


def _binds_locally(node: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> bool:
    """Whether `name` is a local of the function (a parameter, or bound in
    its body without a `global` declaration)."""
    if name in _parameters(node.args):
        return True
    declared: set[str] = set()
    bound = False
    for child in _own_nodes(node.body):
        if isinstance(child, ast.Global | ast.Nonlocal):
            declared.update(child.names)
        elif isinstance(child, ast.Name) and not isinstance(child.ctx, ast.Load):
            bound = bound or child.id == name
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound = bound or child.name == name
        elif isinstance(child, ast.alias):
            bound = bound or (child.asname or child.name.split(".")[0]) == name
    return bound and name not in declared


def _own_nodes(body: list[ast.stmt]) -> list[ast.AST]:
    """The nodes of a function body outside nested functions and classes
    (their bindings are theirs), the nested definitions themselves included."""
    found: list[ast.AST] = []
    pending: list[ast.AST] = list(body)
    while pending:
        node = pending.pop()
        found.append(node)
        if isinstance(
            node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda
        ):
            continue
        pending.extend(ast.iter_child_nodes(node))
    return found
