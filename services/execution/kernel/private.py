"""Private names stay private at run time: each cell's `_names` are renamed.

The analyser never links cells through a name with one leading underscore
(`_tmp`, or `__` alone), so at run time such a name must not leak either: a
cell that reads `_tmp` defined by another cell fails with NameError, and a
re-run of a cell starts without the privates of its previous run. As marimo
does, the kernel renames a cell's private *globals* before compiling it,
`_tmp` → `_cell_<id>_tmp` (`mangle`): two cells' `_tmp` are then two
different globals, invisible to each other by name, while functions, classes
and lambdas the cell defines keep finding theirs when called later. Before a
cell runs, every global carrying its prefix is deleted (the service sends
`private_pattern(cell_id)` with the names to delete), so nothing private
survives into its next run.

Only names that resolve to the module scope are renamed. A function's own
locals and parameters, names bound in a class body (class attributes), and
comprehension variables keep their spelling, so `obj._x`, keyword arguments
and `self._cache` are untouched. Error messages are translated back
(`demangle`), so a user reads `name '_tmp' is not defined`.
"""

from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

# A name ending with this deletes every global that starts with the rest.
WILDCARD: Final = "*"
_MANGLED: Final = re.compile(r"\b_cell_\w+?_(?=\w)")

_FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda


def is_private(name: str) -> bool:
    """The analyser's rule: one leading underscore, or `__` alone."""
    return name == "__" or (name.startswith("_") and not name.startswith("__"))


def prefix(cell_id: str) -> str:
    """What every private global of the cell starts with once renamed."""
    return f"_cell_{re.sub(r'[^0-9A-Za-z]', '_', cell_id)}_"


def mangle(name: str, cell_id: str) -> str:
    """`_tmp` of cell `abc` as the kernel stores it: `_cell_abc_tmp`."""
    return prefix(cell_id) + name[1:]


def private_pattern(cell_id: str) -> str:
    """The delete-names entry that removes every private global of a cell."""
    return prefix(cell_id) + WILDCARD


def demangle(text: str, cell_id: str) -> str:
    """`text` with the cell's renamed privates spelled as the user wrote them."""
    return text.replace(prefix(cell_id), "_")


def rename_private(tree: ast.Module, cell_id: str) -> ast.Module:
    """Rename the cell's private globals in place; return the tree."""
    _Renamer(prefix(cell_id)).visit(tree)
    return tree


class _Scope:
    def __init__(self, kind: str, names: set[str], declared: set[str]) -> None:
        self.kind = kind
        self.names = names
        self.declared_global = declared


class _Renamer(ast.NodeTransformer):
    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._scopes: list[_Scope] = []

    def _is_global(self, name: str) -> bool:
        for depth, scope in enumerate(reversed(self._scopes)):
            if name in scope.declared_global:
                return True
            # Methods and comprehensions do not see their class's names.
            if scope.kind == "class" and depth > 0:
                continue
            if name in scope.names:
                return False
        return True

    def _renamed(self, name: str) -> str:
        if is_private(name) and self._is_global(name):
            return self._prefix + name[1:]
        return name

    def _visit_all(self, nodes: Iterable[ast.AST | None]) -> None:
        for node in nodes:
            if node is not None:
                self.visit(node)

    def _inside(self, scope: _Scope, nodes: Sequence[ast.AST]) -> None:
        self._scopes.append(scope)
        try:
            self._visit_all(nodes)
        finally:
            self._scopes.pop()

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self._renamed(node.id)
        return node

    def visit_Global(self, node: ast.Global) -> ast.Global:
        node.names = [
            self._prefix + name[1:] if is_private(name) else name for name in node.names
        ]
        return node

    def visit_Import(self, node: ast.Import) -> ast.Import:
        for alias in node.names:
            bound = alias.asname or alias.name
            if "." not in bound and self._renamed(bound) != bound:
                alias.asname = self._renamed(bound)
        return node

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.ImportFrom:
        for alias in node.names:
            bound = alias.asname or alias.name
            if self._renamed(bound) != bound:
                alias.asname = self._renamed(bound)
        return node

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.ExceptHandler:
        if node.name is not None:
            node.name = self._renamed(node.name)
        self.generic_visit(node)
        return node

    def visit_MatchAs(self, node: ast.MatchAs) -> ast.MatchAs:
        if node.name is not None:
            node.name = self._renamed(node.name)
        self.generic_visit(node)
        return node

    def visit_MatchStar(self, node: ast.MatchStar) -> ast.MatchStar:
        if node.name is not None:
            node.name = self._renamed(node.name)
        return node

    def visit_MatchMapping(self, node: ast.MatchMapping) -> ast.MatchMapping:
        if node.rest is not None:
            node.rest = self._renamed(node.rest)
        self.generic_visit(node)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        self._visit_function(node, node.body)
        node.name = self._renamed(node.name)
        return node

    def visit_AsyncFunctionDef(
        self, node: ast.AsyncFunctionDef
    ) -> ast.AsyncFunctionDef:
        self._visit_function(node, node.body)
        node.name = self._renamed(node.name)
        return node

    def visit_Lambda(self, node: ast.Lambda) -> ast.Lambda:
        self._visit_function(node, [node.body])
        return node

    def _visit_function(self, node: _FunctionNode, body: Sequence[ast.AST]) -> None:
        args = node.args
        if not isinstance(node, ast.Lambda):
            self._visit_all(node.decorator_list)
            self._visit_all([node.returns])
        self._visit_all([*args.defaults, *args.kw_defaults])
        parameters = [*args.posonlyargs, *args.args, *args.kwonlyargs]
        parameters += [arg for arg in (args.vararg, args.kwarg) if arg is not None]
        self._visit_all([arg.annotation for arg in parameters])
        bound, declared = _bound_in(body)
        names = {arg.arg for arg in parameters} | bound
        self._inside(_Scope("function", names - declared, declared), body)

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.ClassDef:
        self._visit_all([*node.decorator_list, *node.bases, *node.keywords])
        bound, declared = _bound_in(node.body)
        self._inside(_Scope("class", bound - declared, declared), node.body)
        node.name = self._renamed(node.name)
        return node

    def visit_ListComp(self, node: ast.ListComp) -> ast.ListComp:
        self._visit_comprehension(node.generators, [node.elt])
        return node

    def visit_SetComp(self, node: ast.SetComp) -> ast.SetComp:
        self._visit_comprehension(node.generators, [node.elt])
        return node

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> ast.GeneratorExp:
        self._visit_comprehension(node.generators, [node.elt])
        return node

    def visit_DictComp(self, node: ast.DictComp) -> ast.DictComp:
        self._visit_comprehension(node.generators, [node.key, node.value])
        return node

    def _visit_comprehension(
        self, generators: list[ast.comprehension], elements: list[ast.expr]
    ) -> None:
        first, *rest = generators
        self.visit(first.iter)  # evaluated in the enclosing scope
        targets = {
            name.id
            for generator in generators
            for name in ast.walk(generator.target)
            if isinstance(name, ast.Name)
        }
        inner: list[ast.AST] = [first.target, *first.ifs]
        for generator in rest:
            inner += [generator.iter, generator.target, *generator.ifs]
        self._inside(_Scope("comprehension", targets, set()), [*inner, *elements])


def _bound_in(body: Sequence[ast.AST]) -> tuple[set[str], set[str]]:
    """Names a scope's body binds, and those it declares global or nonlocal,
    without entering nested scopes."""
    bound: set[str] = set()
    declared: set[str] = set()
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Global | ast.Nonlocal):
            declared.update(node.names)
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound.update(
                (alias.asname or alias.name).partition(".")[0] for alias in node.names
            )
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar):
            if node.name is not None:
                bound.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest is not None:
            bound.add(node.rest)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
            continue  # decorators and defaults bind nothing here worth finding
        if isinstance(node, ast.Lambda):
            continue
        stack.extend(ast.iter_child_nodes(node))
    return bound, declared
