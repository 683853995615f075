"""A scope-aware walk over one Python cell that finds the global names it uses.

A cell runs like a module: its top level binds and reads globals shared with
every other cell. The walk follows Python's own scoping rules closely enough
to tell, for every name the cell mentions, whether it is a global:

* Scopes are module (the cell's top level), function (`def`, `lambda`),
  class body and comprehension. A function's locals are known before its
  body is walked (a pre-pass, `bindings.py`), because in Python a name bound
  anywhere in a function is local everywhere in it. Module and class scopes
  are flow-sensitive instead: a name is local there only once it has been
  bound, since their code runs top to bottom.
* Name lookup goes outwards, skipping class scopes except the innermost one
  (methods and comprehensions do not see class attributes), and stops at
  `global` declarations.
* A global load is *eager* when its code runs while the cell runs (top level,
  class bodies, list/set/dict comprehensions, decorators, default values,
  annotations): it reads the global unless the cell bound it earlier. It is
  *deferred* when its code runs later (function and lambda bodies,
  generator-expression bodies): it reads the global unless the cell binds it
  anywhere, so a function may use a name the cell defines further down.

Two top-level statements are not what their targets' context says:
`x += 1` at the top level is a write of `x` and not a read (as in marimo: the
cell owns `x`; another definer makes it a multiple definition), and `del x`
of a global the cell did not bind is a read of `x` *and* a deletion, which
the graph turns into edges from every other reader of `x`.

`find_names` returns the raw result; `analysis.py` turns it into the cell's
reads and writes (dropping private names and builtins).
"""

from __future__ import annotations

import ast
import enum
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from services.shared.dataflow.bindings import (
    FunctionBindings,
    FunctionNode,
    parameters,
    target_names,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence


class ImportStarError(Exception):
    """`from module import *` makes a cell's writes unknowable."""

    def __init__(self, module: str, line: int) -> None:
        super().__init__(
            f"`from {module} import *` is not supported (line {line}): "
            "import the names you need explicitly"
        )


@dataclass(frozen=True)
class CellNames:
    """Global names of one cell, before private names and builtins are dropped.

    `writes`: every global the cell binds. `eager`: globals read before the
    cell bound them. `deferred`: globals read from code that runs later
    (function bodies); they are reads only if the cell never binds them.
    `deleted`: globals the top level deletes without having bound them.
    """

    writes: frozenset[str]
    eager: frozenset[str]
    deferred: frozenset[str]
    deleted: frozenset[str] = frozenset()


def find_names(tree: ast.Module) -> CellNames:
    """Walk a parsed cell; raise `ImportStarError` on `import *`."""
    walker = _CellWalker()
    walker.visit(tree)
    return CellNames(
        writes=frozenset(walker.module.names),
        eager=frozenset(walker.eager),
        deferred=frozenset(walker.deferred),
        deleted=frozenset(walker.deleted),
    )


class _Kind(enum.Enum):
    MODULE = enum.auto()
    FUNCTION = enum.auto()
    CLASS = enum.auto()
    COMPREHENSION = enum.auto()


@dataclass(eq=False)
class _Scope:
    """One scope on the walk's stack.

    `names` are the scope's locals: all of them for function and
    comprehension scopes, those bound so far for module and class scopes.
    """

    kind: _Kind
    parent: _Scope | None
    deferred: bool
    names: set[str] = field(default_factory=set)
    global_names: set[str] = field(default_factory=set)


_Comprehension = ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp


class _CellWalker(ast.NodeVisitor):
    """Visits nodes in evaluation order, tracking scopes and global names."""

    def __init__(self) -> None:
        self.module = _Scope(_Kind.MODULE, parent=None, deferred=False)
        self.eager: set[str] = set()
        self.deferred: set[str] = set()
        self.deleted: set[str] = set()
        self._scope = self.module
        # Names bound by the `except ... as name` handlers being walked, at
        # module or class level: Python deletes them when the handler ends,
        # so they are neither writes nor reads of the cell.
        self._handler_names: list[str] = []

    # -- name resolution ---------------------------------------------------

    def _load(self, name: str) -> None:
        scope = self._scope
        innermost = True
        while scope.parent is not None:
            if innermost or scope.kind is not _Kind.CLASS:
                if name in scope.global_names:
                    break
                if name in scope.names:
                    return
            innermost = False
            scope = scope.parent
        self._load_global(name)

    def _load_global(self, name: str) -> None:
        if name in self._handler_names:
            return
        if self._scope.deferred:
            self.deferred.add(name)
        elif name not in self.module.names:
            self.eager.add(name)

    def _store(self, name: str, scope: _Scope | None = None) -> None:
        if name in self._handler_names:
            return  # rebinding `e` inside its handler: deleted all the same
        scope = scope or self._scope
        if scope.kind is _Kind.MODULE or name in scope.global_names:
            self.module.names.add(name)
        elif scope.kind is _Kind.CLASS:
            scope.names.add(name)
        # Function and comprehension locals were collected up front.

    @contextmanager
    def _enter(self, scope: _Scope) -> Iterator[None]:
        outer, self._scope = self._scope, scope
        try:
            yield
        finally:
            self._scope = outer

    def _visit_all(self, nodes: Sequence[ast.AST | None]) -> None:
        for node in nodes:
            if node is not None:
                self.visit(node)

    # -- names, assignments, deletion --------------------------------------

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store):
            self._store(node.id)
        else:
            # Load, and Del: deleting a global the cell did not bind needs it.
            deleting = isinstance(node.ctx, ast.Del)
            if (
                deleting
                and self._scope is self.module
                and node.id not in self.module.names
            ):
                self.deleted.add(node.id)
            self._load(node.id)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        self._visit_all(node.targets)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        # Below the top level, `x += 1` reads x before rebinding it (the
        # target's Store context alone would hide the read); at the top level
        # it only claims x (see the module docstring).
        if isinstance(node.target, ast.Name) and self._scope is not self.module:
            self._load(node.target.id)
        self.visit(node.value)
        self.visit(node.target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._visit_all([node.value, node.annotation, node.target])

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        # A walrus in a comprehension binds in the enclosing non-comprehension
        # scope (PEP 572).
        scope = self._scope
        while scope.kind is _Kind.COMPREHENSION and scope.parent is not None:
            scope = scope.parent
        self._store(node.target.id, scope)

    def visit_For(self, node: ast.For) -> None:
        self._visit_loop(node)

    def visit_AsyncFor(self, node: ast.AsyncFor) -> None:
        self._visit_loop(node)

    def _visit_loop(self, node: ast.For | ast.AsyncFor) -> None:
        self._visit_all([node.iter, node.target, *node.body, *node.orelse])

    def visit_Global(self, node: ast.Global) -> None:
        # `global` must precede any use in its scope, so recording it as it
        # is met is exact for class scopes (function scopes have it already).
        self._scope.global_names.update(node.names)

    # -- imports -----------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._store(alias.asname or alias.name.partition(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module == "__future__":
            return  # a compiler directive, not a binding anyone should read
        for alias in node.names:
            if alias.name == "*":
                module = "." * node.level + (node.module or "")
                raise ImportStarError(module, node.lineno)
            self._store(alias.asname or alias.name)

    # -- exceptions and match ----------------------------------------------

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        self._visit_all([node.type])
        name, scope = node.name, self._scope
        # In a function, the name is an ordinary local (collected up front).
        if name is None or (
            scope.kind is _Kind.FUNCTION and name not in scope.global_names
        ):
            self._visit_all(node.body)
            return
        self._handler_names.append(name)
        self._visit_all(node.body)
        self._handler_names.pop()

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        self._visit_all([node.pattern])
        if node.name is not None:
            self._store(node.name)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name is not None:
            self._store(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        self._visit_all([*node.keys, *node.patterns])
        if node.rest is not None:
            self._store(node.rest)

    # -- functions and classes ---------------------------------------------

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._visit_function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._visit_function(node)

    def _visit_function(self, node: FunctionNode) -> None:
        # Decorators, defaults and annotations run when the `def` runs, in
        # the enclosing scope; only the body is deferred.
        self._visit_all(node.decorator_list)
        self._visit_signature(node.args)
        self._visit_all([node.returns])
        self._visit_body(node.args, node.body)
        self._store(node.name)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._visit_signature(node.args)
        self._visit_body(node.args, [node.body])

    def _visit_signature(self, args: ast.arguments) -> None:
        self._visit_all([*args.defaults, *args.kw_defaults])
        self._visit_all([arg.annotation for arg in parameters(args)])

    def _visit_body(self, args: ast.arguments, body: Sequence[ast.AST]) -> None:
        bindings = FunctionBindings.collect(body)
        names = {arg.arg for arg in parameters(args)} | bindings.names
        scope = _Scope(
            _Kind.FUNCTION,
            parent=self._scope,
            deferred=True,
            names=names - bindings.global_names - bindings.nonlocal_names,
            global_names=bindings.global_names,
        )
        with self._enter(scope):
            self._visit_all(body)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._visit_all([*node.decorator_list, *node.bases, *node.keywords])
        # A class body runs at once, when the class statement runs.
        scope = _Scope(_Kind.CLASS, parent=self._scope, deferred=self._scope.deferred)
        with self._enter(scope):
            self._visit_all(node.body)
        self._store(node.name)

    # -- comprehensions ----------------------------------------------------

    def visit_ListComp(self, node: ast.ListComp) -> None:
        self._visit_comprehension(node, [node.elt], lazy=False)

    def visit_SetComp(self, node: ast.SetComp) -> None:
        self._visit_comprehension(node, [node.elt], lazy=False)

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self._visit_comprehension(node, [node.key, node.value], lazy=False)

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> None:
        # Only the first iterable of a generator expression is evaluated when
        # it is created; the rest runs as it is consumed, like a function.
        self._visit_comprehension(node, [node.elt], lazy=True)

    def _visit_comprehension(
        self, node: _Comprehension, elements: list[ast.expr], *, lazy: bool
    ) -> None:
        first, *rest = node.generators
        # The first iterable is evaluated in the enclosing scope.
        self.visit(first.iter)
        scope = _Scope(
            _Kind.COMPREHENSION,
            parent=self._scope,
            deferred=self._scope.deferred or lazy,
            names=target_names([gen.target for gen in node.generators]),
        )
        with self._enter(scope):
            self._visit_all([first.target, *first.ifs])
            for generator in rest:
                self._visit_all([generator.iter, generator.target, *generator.ifs])
            self._visit_all(elements)
