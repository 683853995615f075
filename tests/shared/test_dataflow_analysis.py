"""Tables of cells and the global names they read and write."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import pytest

from services.shared.dataflow import (
    analyse_python,
    analyse_sql,
    imports_only,
    parse_sql,
)


@dataclass(frozen=True)
class Case:
    name: str
    code: str
    writes: set[str] = field(default_factory=set)
    reads: set[str] = field(default_factory=set)


def case(name: str, code: str, writes: str = "", reads: str = "") -> Case:
    """A case whose names are given as space-separated strings."""
    return Case(name, code, set(writes.split()), set(reads.split()))


ASSIGNMENT = [
    case("simple assignment", "x = 1", writes="x"),
    case("assignment reads value", "y = x + 1", writes="y", reads="x"),
    case("chained assignment", "a = b = c", writes="a b", reads="c"),
    case("tuple unpacking", "a, b = pair", writes="a b", reads="pair"),
    case("nested unpacking", "(a, (b, c)), d = v", writes="a b c d", reads="v"),
    case(
        "starred unpacking", "first, *rest = items", writes="first rest", reads="items"
    ),
    case("list target", "[a, b] = 1, 2", writes="a b"),
    case("bound before use is not a read", "x = 1\ny = x", writes="x y"),
    case("used before bound is a read", "y = x\nx = 1", writes="x y", reads="x"),
    case("self reference reads", "x = x + 1", writes="x", reads="x"),
    case("augmented assignment only writes", "x += 1", writes="x"),
    case("augmented after binding", "x = 0\nx += 1", writes="x"),
    case("augmented reads its value", "total += step", writes="total", reads="step"),
    case(
        "augmented in a class body reads",
        "class C:\n    n += 1",
        writes="C",
        reads="n",
    ),
    case("annotated assignment", "x: int = 1", writes="x"),
    case(
        "annotated reads annotation",
        "x: Model = make()",
        writes="x",
        reads="Model make",
    ),
    case("annotation without value is a write", "x: int", writes="x"),
    case("annotated attribute is not a write", "obj.x: int = 1", reads="obj"),
    case("subscript assignment reads", 'df["a"] = 1', reads="df"),
    case("attribute assignment reads", "obj.x = y", reads="obj y"),
    case("nested attribute assignment reads root", "a.b.c = 1", reads="a"),
    case("subscript index is read", "d[key] = value", reads="d key value"),
    case("augmented subscript reads", "counts[k] += 1", reads="counts k"),
    case("attribute read", "y = np.pi", writes="y", reads="np"),
    case("mutating method call", "items.append(1)", reads="items"),
]

DELETION = [
    case("del of another cell's name reads it", "del x", reads="x"),
    case("del after binding stays a write", "x = 1\ndel x", writes="x"),
    case("del subscript reads container", "del d[k]", reads="d k"),
    case("del attribute reads object", "del obj.attr", reads="obj"),
    case("del in function is local", "def f():\n    x = 1\n    del x", writes="f"),
]

LOOPS_AND_WITH = [
    case("for target", "for i in items:\n    pass", writes="i", reads="items"),
    case(
        "for tuple target", "for k, v in d.items():\n    pass", writes="k v", reads="d"
    ),
    case(
        "for body reads",
        "for i in r:\n    total = total + i",
        writes="i total",
        reads="r total",
    ),
    case(
        "for else",
        "for i in r:\n    pass\nelse:\n    done = i",
        writes="i done",
        reads="r",
    ),
    case(
        "for attribute target", "for obj.attr in values:\n    pass", reads="obj values"
    ),
    case("while", "while n > 0:\n    n = n - 1", writes="n", reads="n"),
    case(
        "with target",
        "with open(p) as f:\n    data = f.read()",
        writes="f data",
        reads="p",
    ),
    case(
        "with tuple target",
        "with ctx() as (a, b):\n    pass",
        writes="a b",
        reads="ctx",
    ),
    case("with without target", "with lock:\n    x = 1", writes="x", reads="lock"),
    case(
        "if branches",
        "if flag:\n    x = 1\nelse:\n    y = 2",
        writes="x y",
        reads="flag",
    ),
]

IMPORTS = [
    case("import", "import numpy", writes="numpy"),
    case("import as", "import numpy as np", writes="np"),
    case("dotted import binds root", "import a.b.c", writes="a"),
    case("dotted import as binds alias", "import a.b as c", writes="c"),
    case("from import", "from os import path, sep", writes="path sep"),
    case("from import as", "from os import path as p", writes="p"),
    case("relative import", "from . import sibling", writes="sibling"),
    case("future import binds nothing", "from __future__ import annotations"),
    case(
        "import in function is local",
        "def f():\n    import os\n    return os",
        writes="f",
    ),
    case("private import alias", "import pandas as _pd", writes=""),
]

FUNCTIONS = [
    case("def", "def f():\n    pass", writes="f"),
    case(
        "parameters are local",
        "def f(a, b=1, *args, c, **kw):\n    return a, b, args, c, kw",
        writes="f",
    ),
    case("body reads global", "def f():\n    return x", writes="f", reads="x"),
    case("body read of later binding", "def f():\n    return x\nx = 1", writes="f x"),
    case(
        "local assignment is not a write",
        "def f():\n    y = 1\n    return y",
        writes="f",
    ),
    case(
        "local used before assignment is local",
        "def f():\n    print(y)\n    y = 1",
        writes="f",
    ),
    case("recursion", "def f(n):\n    return f(n - 1)", writes="f"),
    case(
        "default evaluated outside",
        "def f(a=default):\n    return a",
        writes="f",
        reads="default",
    ),
    case(
        "default before binding",
        "def f(a=x):\n    return a\nx = 1",
        writes="f x",
        reads="x",
    ),
    case("decorator read", "@cache\ndef f():\n    pass", writes="f", reads="cache"),
    case(
        "annotations read",
        "def f(a: In) -> Out:\n    return a",
        writes="f",
        reads="In Out",
    ),
    case(
        "global declaration writes", "def f():\n    global x\n    x = 1", writes="f x"
    ),
    case(
        "global declaration reads",
        "def f():\n    global x\n    return x",
        writes="f",
        reads="x",
    ),
    case("global augmented", "def f():\n    global n\n    n += 1", writes="f n"),
    case(
        "nonlocal stays in closure",
        "def f():\n    n = 0\n    def g():\n"
        "        nonlocal n\n        n += 1\n    return g",
        writes="f",
    ),
    case(
        "closure reads enclosing local",
        "def outer():\n    v = 1\n    def inner():\n        return v\n    return inner",
        writes="outer",
    ),
    case(
        "nested function reads global",
        "def outer():\n    def inner():\n        return g\n    return inner",
        writes="outer",
        reads="g",
    ),
    case("lambda", "f = lambda a: a + b", writes="f", reads="b"),
    case("lambda parameter shadows global", "f = lambda x: x", writes="f"),
    case(
        "parameter used in comprehension",
        "def f(x):\n    return [x for _ in range(3)]",
        writes="f",
    ),
    case(
        "local annotation is a deferred read",
        "def f():\n    y: Model = 1\n    return y",
        writes="f",
        reads="Model",
    ),
    case("lambda default", "f = lambda a=d: a", writes="f", reads="d"),
    case("lambda reads later binding", "f = lambda: x\nx = 1", writes="f x"),
    case(
        "async def",
        "async def fetch(url):\n    return await get(url)",
        writes="fetch",
        reads="get",
    ),
    case("top-level await", "data = await fetch()", writes="data", reads="fetch"),
    case(
        "async for",
        "async for item in stream:\n    pass",
        writes="item",
        reads="stream",
    ),
    case(
        "async with",
        "async with session() as s:\n    pass",
        writes="s",
        reads="session",
    ),
    case("call of defined function", "def f():\n    pass\nf()", writes="f"),
]

CLASSES = [
    case("class", "class A:\n    pass", writes="A"),
    case(
        "class bases read",
        "class A(Base, metaclass=Meta):\n    pass",
        writes="A",
        reads="Base Meta",
    ),
    case(
        "class body names are not writes", "class A:\n    x = 1\n    y = x", writes="A"
    ),
    case("class body reads global", "class A:\n    x = y", writes="A", reads="y"),
    case("class body is eager", "class A:\n    x = y\ny = 1", writes="A y", reads="y"),
    case(
        "method does not see class names",
        "class A:\n    a = 1\n    def m(self):\n        return a",
        writes="A",
        reads="a",
    ),
    case(
        "method reads later binding",
        "class A:\n    def m(self):\n        return x\nx = 1",
        writes="A x",
    ),
    case(
        "method uses class by name",
        "class A:\n    def m(self):\n        return A()",
        writes="A",
    ),
    case(
        "class decorator",
        "@dataclass\nclass A:\n    x: int = 0",
        writes="A",
        reads="dataclass",
    ),
    case(
        "property setter decorator",
        "class A:\n    @property\n    def v(self):\n        return 1\n"
        "    @v.setter\n    def v(self, value):\n        pass",
        writes="A",
    ),
    case(
        "nested class does not see outer class",
        "class A:\n    t = 1\n    class B:\n        u = t",
        writes="A",
        reads="t",
    ),
    case(
        "class in function is deferred",
        "def f():\n    class A:\n        y = x\n    return A\nx = 1",
        writes="f x",
    ),
    case("global in class body", "class A:\n    global g\n    g = 1", writes="A g"),
    case(
        "class body comprehension skips class scope",
        "class A:\n    xs = [1]\n    ys = [x + len(xs) for x in xs]",
        writes="A",
        reads="xs",
    ),
]

COMPREHENSIONS = [
    case(
        "list comprehension variable is local",
        "ys = [x for x in xs]",
        writes="ys",
        reads="xs",
    ),
    case(
        "comprehension reads",
        "ys = [f(x) for x in xs if x > lo]",
        writes="ys",
        reads="f xs lo",
    ),
    case("set comprehension", "s = {x for x in xs}", writes="s", reads="xs"),
    case(
        "dict comprehension", "d = {k: v for k, v in pairs}", writes="d", reads="pairs"
    ),
    case(
        "nested comprehension",
        "m = [[i * j for j in cols] for i in rows]",
        writes="m",
        reads="cols rows",
    ),
    case(
        "comprehension shadows global",
        "x = 1\nys = [x for x in xs]",
        writes="x ys",
        reads="xs",
    ),
    case(
        "comprehension iterable named like variable",
        "ys = [x for x in x]",
        writes="ys",
        reads="x",
    ),
    case(
        "generator expression",
        "total = sum(v for v in values)",
        writes="total",
        reads="values",
    ),
    case(
        "generator body reads later binding",
        "g = (x * k for x in xs)\nk = 2",
        writes="g k",
        reads="xs",
    ),
    case("walrus", "if (n := len(items)) > 3:\n    pass", writes="n", reads="items"),
    case(
        "walrus in comprehension binds globally",
        "ys = [y := f(x) for x in xs]",
        writes="ys y",
        reads="f xs",
    ),
    case(
        "walrus then use",
        "[last := x for x in xs]\nprint(last)",
        writes="last",
        reads="xs",
    ),
    case(
        "walrus in function is local",
        "def f():\n    return [y := 1 for _ in range(3)]",
        writes="f",
    ),
]

MATCH = [
    case(
        "match capture",
        "match p:\n    case Point(x=a):\n        pass",
        writes="a",
        reads="p Point",
    ),
    case(
        "match sequence and star",
        "match v:\n    case [a, *rest]:\n        pass",
        writes="a rest",
        reads="v",
    ),
    case(
        "match mapping and rest",
        'match m:\n    case {"k": v, **kw}:\n        pass',
        writes="v kw",
        reads="m",
    ),
    case(
        "match as",
        "match s:\n    case A() as b:\n        pass",
        writes="b",
        reads="s A",
    ),
    case(
        "match value",
        "match c:\n    case Color.RED:\n        hit = 1",
        writes="hit",
        reads="c Color",
    ),
    case(
        "match or and guard",
        "match n:\n    case 1 | 2 as k if k > limit:\n        pass",
        writes="k",
        reads="n limit",
    ),
    case(
        "match wildcard binds nothing", "match n:\n    case _:\n        pass", reads="n"
    ),
    case(
        "match in function is local",
        "def f(p):\n    match p:\n        case [a]:\n            return a",
        writes="f",
    ),
]

EXCEPTIONS = [
    case(
        "except name is not a write",
        "try:\n    pass\nexcept ParseError as e:\n    print(e)",
        reads="ParseError",
    ),
    case(
        "except type read",
        "try:\n    run()\nexcept MyError:\n    pass",
        reads="run MyError",
    ),
    case(
        "except body writes",
        "try:\n    x = 1\nexcept Exception as e:\n    err = e",
        writes="x err",
    ),
    case(
        "try else finally",
        "try:\n    pass\nexcept E:\n    pass\nelse:\n    a = 1\nfinally:\n    b = 2",
        writes="a b",
        reads="E",
    ),
    case(
        "except star",
        "try:\n    pass\nexcept* GroupError as eg:\n    print(eg)",
        reads="GroupError",
    ),
    case(
        "rebinding except name in handler",
        "try:\n    pass\nexcept E as e:\n    e = 0\n    f = e",
        writes="f",
        reads="E",
    ),
    case(
        "except name after handler is a read",
        "try:\n    pass\nexcept E as e:\n    pass\nprint(e)",
        reads="E e",
    ),
    case(
        "except in function is local",
        "def f():\n    try:\n        pass\n    except E as e:\n        return e",
        writes="f",
        reads="E",
    ),
]

PRIVATE_AND_BUILTINS = [
    case("private write", "_x = 1", writes=""),
    case("private read", "y = _x", writes="y"),
    case("dunder read is a builtin", "name = __name__", writes="name"),
    case("dunder write is public", "__all__ = ['f']", writes="__all__"),
    case("double underscore is public", "__x = 1\ny = __z", "__x y", "__z"),
    case("double underscore alone is private", "__ = 1\ny = _", writes="y"),
    case("private function", "def _helper():\n    return x", reads="x"),
    case("builtin is not a read", "print(len(xs))", reads="xs"),
    case("display is provided by the kernel", "display(df)", reads="df"),
    case("rebinding a builtin writes it", "print = log", writes="print", reads="log"),
    case("builtin bound before use", "len = 3\ny = len", writes="len y"),
]

MISC = [
    case(
        "f-string reads",
        'msg = f"{greeting}, {name!r:>{width}}"',
        writes="msg",
        reads="greeting name width",
    ),
    case(
        "conditional expression", "y = a if cond else b", writes="y", reads="a cond b"
    ),
    case("empty cell", ""),
    case("comment only", "# nothing"),
    case("expression statement", "x", reads="x"),
    case("keyword arguments", "f(a, key=b)", reads="f a b"),
    case("slice", "y = xs[lo:hi]", writes="y", reads="xs lo hi"),
    case("assert", "assert ok, message", reads="ok message"),
    case("raise", "raise Problem(detail)", reads="Problem detail"),
    case("global at top level is harmless", "global x\nx = 1", writes="x"),
]

CASES = [
    *ASSIGNMENT,
    *DELETION,
    *LOOPS_AND_WITH,
    *IMPORTS,
    *FUNCTIONS,
    *CLASSES,
    *COMPREHENSIONS,
    *MATCH,
    *EXCEPTIONS,
    *PRIVATE_AND_BUILTINS,
    *MISC,
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_analyse_python(case: Case) -> None:
    analysis = analyse_python(case.code)

    assert analysis.error is None
    assert (set(analysis.writes), set(analysis.reads)) == (case.writes, case.reads)


@dataclass(frozen=True)
class BuiltinCase:
    name: str
    code: str
    builtin_reads: set[str]


BUILTIN_CASES = [
    BuiltinCase("builtins are kept apart", "print(len(xs))", {"print", "len"}),
    BuiltinCase("bound builtin is not kept", "len = 3\nprint(len)", {"print"}),
    BuiltinCase("builtin in function body", "def f():\n    return max(a)", {"max"}),
    BuiltinCase(
        "builtin rebound later in cell", "def f():\n    return max(a)\nmax = 1", set()
    ),
]


@pytest.mark.parametrize("case", BUILTIN_CASES, ids=lambda c: c.name)
def test_builtin_reads(case: BuiltinCase) -> None:
    analysis = analyse_python(case.code)

    assert set(analysis.builtin_reads) == case.builtin_reads


@dataclass(frozen=True)
class ErrorCase:
    name: str
    code: str
    message: str


ERROR_CASES = [
    ErrorCase("syntax error", "x = (", "syntax error at line 1: '(' was never closed"),
    ErrorCase("syntax error line", "a = 1\nb = 2\nc = = 3", "syntax error at line 3"),
    ErrorCase("bad indentation", "x = 1\n  y = 2", "syntax error at line 2"),
    ErrorCase("import star", "from os import *", "`from os import *` is not supported"),
    ErrorCase("relative import star", "from .mod import *", "`from .mod import *`"),
    ErrorCase("return outside function", "return 1", "'return' outside function"),
    ErrorCase(
        "nonlocal at top level", "nonlocal x", "nonlocal declaration not allowed"
    ),
    ErrorCase(
        "await in sync function", "def f():\n    await g()", "'await' outside async"
    ),
    ErrorCase("null byte", "x = 1\0", "syntax error"),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.name)
def test_analysis_error(case: ErrorCase) -> None:
    analysis = analyse_python(case.code)

    assert analysis.error is not None
    assert case.message in analysis.error
    assert (analysis.writes, analysis.reads) == (frozenset(), frozenset())


def test_deeply_nested_code_is_an_error_not_a_crash() -> None:
    code = "x = " + "+".join(["a"] * 5000)

    analysis = analyse_python(code)

    assert analysis.error is not None


@dataclass(frozen=True)
class SqlCase:
    name: str
    code: str
    result_name: str
    writes: set[str] = field(default_factory=set)
    reads: set[str] = field(default_factory=set)


SQL_CASES = [
    SqlCase("no placeholders", "select 1", "df", writes={"df"}),
    SqlCase("placeholder", "select * from t where a > {lo}", "df", {"df"}, {"lo", "t"}),
    SqlCase("table placeholder", "select * from {frame}", "out", {"out"}, {"frame"}),
    SqlCase("repeated placeholder", "select {a}, {a}, {b}", "r", {"r"}, {"a", "b"}),
    SqlCase("no result name", "select {x}", "", set(), {"x"}),
    SqlCase("escaped braces", "select '{{a}}', {{b}}", "r", {"r"}),
    SqlCase("inside string literal", "select '{x}' || {y}", "r", {"r"}, {"y"}),
    SqlCase("doubled quote in string", "select 'it''s {x}', {y}", "r", {"r"}, {"y"}),
    SqlCase("quoted identifier", 'select "{col}" from {t}', "r", {"r"}, {"t"}),
    SqlCase("line comment", "select 1 -- {x}\n, {y}", "r", {"r"}, {"y"}),
    SqlCase("block comment", "select /* {x}\n */ {y}", "r", {"r"}, {"y"}),
    SqlCase("unterminated string", "select {a}, '{b}", "r", {"r"}, {"a"}),
    SqlCase("not an identifier", "select {1}, { a }, {a.b}", "r", {"r"}),
    SqlCase("private placeholder", "select {_x}", "r", {"r"}),
    SqlCase("private result name", "select 1", "_r"),
    SqlCase("table is a read", "select sum(x) from sales", "r", {"r"}, {"sales"}),
    SqlCase(
        "joined tables", "select * from a join b using (k)", "r", {"r"}, {"a", "b"}
    ),
    SqlCase(
        "cte is not a read",
        "with t as (select * from s) select * from t",
        "r",
        {"r"},
        {"s"},
    ),
    SqlCase(
        "qualified table is read qualified",
        "select * from public.orders",
        "r",
        {"r"},
        {"public.orders"},
    ),
    SqlCase(
        "create table writes it and is no read of it",
        "create table t as select * from src",
        "r",
        {"r", "t"},
        {"src"},
    ),
    SqlCase(
        "create or replace view",
        "create or replace view v as select * from t",
        "",
        {"v"},
        {"t"},
    ),
    SqlCase(
        "create qualified table writes the qualified name",
        "create table s.t (a int)",
        "",
        {"s.t"},
        set(),
    ),
    SqlCase("attach writes the database", "attach 'file.db' as db", "", {"db"}, set()),
    SqlCase(
        "a table read after it is created is no read",
        "create table t as select 1; select * from t",
        "r",
        {"r", "t"},
        set(),
    ),
    SqlCase(
        "subquery table",
        "select * from (select * from inner_df) q",
        "r",
        {"r"},
        {"inner_df"},
    ),
    SqlCase(
        "unparseable sql reads only placeholders",
        "selec garbage {x} from",
        "r",
        {"r"},
        {"x"},
    ),
    SqlCase(
        "table function is not a read", "select * from read_csv('f.csv')", "r", {"r"}
    ),
    SqlCase("private table", "select * from _hidden", "r", {"r"}),
]


@pytest.mark.parametrize("case", SQL_CASES, ids=lambda c: c.name)
def test_analyse_sql(case: SqlCase) -> None:
    analysis = analyse_sql(case.code, case.result_name)

    assert analysis.error is None
    assert (set(analysis.writes), set(analysis.reads)) == (case.writes, case.reads)


@pytest.mark.parametrize("result_name", ["1df", "my-df", "class", "a b"])
def test_invalid_sql_result_name_is_an_error(result_name: str) -> None:
    analysis = analyse_sql("select {x}", result_name)

    assert analysis.error is not None
    assert result_name in analysis.error
    assert (analysis.writes, analysis.reads) == (frozenset(), frozenset())


def test_sql_template_splits_text_around_placeholders() -> None:
    template = parse_sql("select {{1}}, '{x}' from {t} where a = {lo}")

    assert template.names == ("t", "lo")
    assert template.texts == ("select {1}, '{x}' from ", " where a = ", "")


@pytest.mark.parametrize(
    ("code", "deletes"),
    [
        ("del x", {"x"}),
        ("del x, y", {"x", "y"}),
        ("x = 1\ndel x", set()),
        ("del _x", set()),
        ("def f():\n    global x\n    del x", set()),
        ("del d[k]", set()),
    ],
    ids=["global", "two", "bound first", "private", "in a function", "item"],
)
def test_deletes_are_top_level_deletions_of_other_cells_names(
    code: str, deletes: set[str]
) -> None:
    assert analyse_python(code).deletes == deletes


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("import os", True),
        ("import os\nfrom math import pi as p", True),
        ("import os\nx = 1", False),
        ("", False),
        ("import (", False),
    ],
)
def test_imports_only(code: str, expected: bool) -> None:
    assert imports_only(code) is expected


def test_the_grammar_is_the_running_pythons() -> None:
    analysis = analyse_python("type Pair = tuple[int, int]")

    if sys.version_info >= (3, 12):
        assert analysis.writes == {"Pair"}
    else:
        assert analysis.error is not None
        assert analysis.error.startswith("syntax error")
