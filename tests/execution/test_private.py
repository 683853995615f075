"""Per-cell renaming of private names, checked by running the renamed code."""

from __future__ import annotations

import ast
from typing import Any

import pytest

from services.execution.kernel.private import (
    demangle,
    mangle,
    private_pattern,
    rename_private,
)


def run(code: str, cell_id: str, namespace: dict[str, Any]) -> None:
    tree = rename_private(ast.parse(code), cell_id)
    exec(compile(tree, "<cell>", "exec"), namespace)  # noqa: S102 - the point


CASES = [
    ("a global private is renamed", "_x = 1", {"_cell_a_x": 1}),
    ("a public name is not", "x = 1", {"x": 1}),
    ("a dunder is public", "__all__ = []", {"__all__": []}),
    (
        "a private function keeps its privates",
        "_n = 2\ndef _f(_k=1):\n    return _n + _k\nr = _f()",
        {"_cell_a_n": 2, "r": 3},
    ),
    (
        "function locals and parameters keep their names",
        "def f(_a):\n    _b = _a\n    return _b\nr = f(_a=4)",
        {"r": 4},
    ),
    (
        "global declarations follow the rename",
        "def f():\n    global _g\n    _g = 5\nf()",
        {"_cell_a_g": 5},
    ),
    (
        "class attributes keep their names",
        "class C:\n    _k = 6\n    def get(self):\n        return self._k\n"
        "r = C().get()",
        {"r": 6},
    ),
    (
        "imports bound to private names",
        "import math as _m\nfrom math import pi as _pi\nr = _m.floor(_pi)",
        {"r": 3},
    ),
    (
        "comprehension variables are local",
        "_t = 10\nr = [_i + _t for _i in range(2)]",
        {"r": [10, 11]},
    ),
    (
        "a lambda sees the cell's privates later",
        "_base = 7\nf = lambda _d: _base + _d\nr = f(1)",
        {"r": 8},
    ),
]


@pytest.mark.parametrize(("name", "code", "expected"), CASES, ids=[c[0] for c in CASES])
def test_rename_private(name: str, code: str, expected: dict[str, object]) -> None:
    namespace: dict[str, Any] = {}

    run(code, "a", namespace)

    for key, value in expected.items():
        assert namespace[key] == value
    unrenamed = [key for key in namespace if key.startswith("_") and key[1] != "_"]
    assert [key for key in unrenamed if not key.startswith("_cell_")] == []


def test_another_cells_private_is_not_visible() -> None:
    namespace: dict[str, Any] = {}
    run("_tmp = 1", "a", namespace)

    with pytest.raises(NameError):
        run("y = _tmp", "b", namespace)


def test_mangled_names_read_back_as_written() -> None:
    assert demangle(f"name {mangle('_tmp', 'c-1')!r} is not defined", "c-1") == (
        "name '_tmp' is not defined"
    )


def test_private_pattern_is_the_prefix_and_a_wildcard() -> None:
    assert private_pattern("ab") == mangle("_", "ab") + "*"
