"""The names a function body binds, found before the body is walked.

In Python, a name bound anywhere in a function body is local to the whole
function (reading it before the binding is an UnboundLocalError, not a read
of the global). So the visitor must know a function's locals before it walks
the body; `FunctionBindings.collect` finds them in one pass that does not
enter nested scopes.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


def parameters(args: ast.arguments) -> list[ast.arg]:
    """Every parameter of a signature, in no particular order."""
    extra = [arg for arg in (args.vararg, args.kwarg) if arg is not None]
    return [*args.posonlyargs, *args.args, *args.kwonlyargs, *extra]


def target_names(targets: Sequence[ast.expr]) -> set[str]:
    """The names bound by assignment targets (not attribute or item targets)."""
    return {
        node.id
        for target in targets
        for node in ast.walk(target)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)
    }


class FunctionBindings(ast.NodeVisitor):
    """The names a function body binds, without entering nested scopes.

    Walrus targets inside comprehensions are included (they bind in the
    function); comprehension variables and the bodies of nested functions,
    lambdas and classes are not.
    """

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.global_names: set[str] = set()
        self.nonlocal_names: set[str] = set()

    @classmethod
    def collect(cls, body: Sequence[ast.AST]) -> FunctionBindings:
        bindings = cls()
        for node in body:
            bindings.visit(node)
        return bindings

    def _visit_all(self, nodes: Sequence[ast.AST | None]) -> None:
        for node in nodes:
            if node is not None:
                self.visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        # Del binds too: `del x` makes x local to the function.
        if not isinstance(node.ctx, ast.Load):
            self.names.add(node.id)

    def visit_Global(self, node: ast.Global) -> None:
        self.global_names.update(node.names)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.nonlocal_names.update(node.names)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.names.add(alias.asname or alias.name.partition(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":
                self.names.add(alias.asname or alias.name)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name is not None:
            self.names.add(node.name)
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.name is not None:
            self.names.add(node.name)
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name is not None:
            self.names.add(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest is not None:
            self.names.add(node.rest)
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._visit_definition(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._visit_definition(node)

    def _visit_definition(self, node: FunctionNode) -> None:
        self.names.add(node.name)
        self._visit_all(node.decorator_list)
        self._visit_outer_parts(node.args)
        self._visit_all([node.returns])

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._visit_outer_parts(node.args)

    def _visit_outer_parts(self, args: ast.arguments) -> None:
        self._visit_all([*args.defaults, *args.kw_defaults])
        self._visit_all([arg.annotation for arg in parameters(args)])

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.names.add(node.name)
        self._visit_all([*node.decorator_list, *node.bases, *node.keywords])

    def visit_comprehension(self, node: ast.comprehension) -> None:
        # Skip the target: comprehension variables are not function locals.
        self._visit_all([node.iter, *node.ifs])
