"""Answers about a kernel's namespace, given while a cell may be running.

These run on the kernel's request-reading thread (`inbox.py`), not on the
main thread that runs cells, so they must never disturb a run: they read the
namespace from a copy (copying a dict is atomic under the GIL, iterating a
live one while a cell binds names is not), catch everything user objects may
raise, and keep what they do to a user object small (`reprlib`'s bounded
repr, `len`, a `shape` attribute).

Completions come from jedi's `Interpreter`, the engine IPython uses, over the
cell's code and the live namespace. jedi is told not to run descriptors
(`allow_unsafe_interpreter_executions`): a property of a user object would
otherwise execute on this thread, in the middle of whatever the cell is
doing with that object.
"""

from __future__ import annotations

import reprlib
from typing import TYPE_CHECKING, Any, Final

from reflow.execution.v1 import execution_pb2
from services.execution.kernel.private import is_private

if TYPE_CHECKING:
    from collections.abc import Mapping

    from reflow.execution.v1 import kernel_pb2

MAX_COMPLETIONS: Final = 200
MAX_VARIABLES: Final = 1000
MAX_REPR_CHARS: Final = 200
# Names the kernel itself puts in every namespace.
_KERNEL_NAMES: Final = frozenset({"display"})

_repr = reprlib.Repr()
_repr.maxlevel = 2
_repr.maxstring = _repr.maxother = MAX_REPR_CHARS


def completions(
    namespace: Mapping[str, Any], query: kernel_pb2.CompletionQuery
) -> execution_pb2.CompleteResponse:
    """jedi's completions for the query's cursor, against `namespace`."""
    import jedi  # noqa: PLC0415 - costs ~100 ms; only kernels that are asked pay

    jedi.settings.allow_unsafe_interpreter_executions = False
    code = query.code
    offset = min(max(query.cursor_offset, 0), len(code))
    before = code[:offset]
    line = before.count("\n") + 1
    column = offset - (before.rfind("\n") + 1)
    script = jedi.Interpreter(code, namespaces=[dict(namespace)])
    response = execution_pb2.CompleteResponse(kernel_running=True)
    for completion in script.complete(line, column):
        if completion.name.startswith("_cell_"):
            continue  # another cell's private global (private.py)
        if not response.completions:
            response.prefix_length = completion.get_completion_prefix_length()
        response.completions.add(text=completion.name, kind=completion.type)
        if len(response.completions) >= MAX_COMPLETIONS:
            break
    return response


def variables(namespace: Mapping[str, Any]) -> execution_pb2.ListVariablesResponse:
    """The namespace's user-visible globals, by name, described briefly."""
    response = execution_pb2.ListVariablesResponse(kernel_running=True)
    names = sorted(
        name
        for name in dict(namespace)
        if not is_private(name)
        and not name.startswith("__")
        and name not in _KERNEL_NAMES
    )
    for name in names[:MAX_VARIABLES]:
        value = namespace.get(name)
        response.variables.add(
            name=name,
            type=type(value).__name__,
            shape=_shape(value),
            repr=_short_repr(value),
        )
    return response


def _shape(value: object) -> str:
    if isinstance(value, type):
        return ""  # a class's len or shape would be about the class object
    try:
        shape = getattr(value, "shape", None)
        if isinstance(shape, tuple) and all(isinstance(n, int) for n in shape):
            return str(shape)
        if hasattr(type(value), "__len__"):
            return str(len(value))  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001, S110 - a broken user object has no shape
        pass
    return ""


def _short_repr(value: object) -> str:
    try:
        text = _repr.repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not fail the query
        return f"<unprintable {type(value).__name__} object>"
    if len(text) > MAX_REPR_CHARS:
        text = text[: MAX_REPR_CHARS - 1] + "…"
    return text
