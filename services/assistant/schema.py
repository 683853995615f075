"""A tool's arguments: a dataclass, the JSON schema the model sees, and the check.

Each tool declares its arguments as a frozen dataclass whose fields say what
they are with ``arg("description", default)``. From it come

* ``json_schema(cls)``: the ``parameters`` object of the tool's function
  definition (``type: object``, ``properties``, ``required``,
  ``additionalProperties: false``), and
* ``parse_arguments(cls, value)``: the dataclass built from the model's JSON,
  or ``ArgumentsInvalid`` listing every problem (a missing field, an unknown
  one, a wrong type, a value outside an enum), so the model can fix all of
  them in its next call.

Only the types tools need are supported: ``str``, ``int``, ``bool``,
``list[str]``, ``Literal["a", "b"]`` and any of them ``| None``. Anything
else is a programming error, found when the tool table is built.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

A = TypeVar("A")


class ArgumentsInvalid(ValueError):
    """The model's arguments do not fit the schema; ``problems`` says how."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def arg(description: str, default: Any = dataclasses.MISSING) -> Any:
    """A field of an Args dataclass, with the description the model reads."""
    if isinstance(default, list):
        raise TypeError("use a tuple or None as a default, not a list")
    return dataclasses.field(default=default, metadata={"description": description})


def json_schema(cls: type[Any]) -> dict[str, Any]:
    """The JSON schema of an Args dataclass."""
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in dataclasses.fields(cls):
        schema = _schema_of(hints[field.name], f"{cls.__name__}.{field.name}")
        description = field.metadata.get("description")
        if description:
            schema["description"] = description
        properties[field.name] = schema
        if field.default is dataclasses.MISSING:
            required.append(field.name)
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def parse_arguments(cls: type[A], value: object) -> A:
    """``value`` (the decoded JSON) as an instance of ``cls``, or ArgumentsInvalid."""
    if not isinstance(value, dict):
        raise ArgumentsInvalid(["the arguments must be a JSON object"])
    hints = typing.get_type_hints(cls)
    fields = {field.name: field for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    problems = [
        f"{name}: is not an argument of this tool (expected: {', '.join(fields)})"
        for name in value
        if name not in fields
    ]
    given: dict[str, Any] = {}
    for name, field in fields.items():
        if name not in value:
            if field.default is dataclasses.MISSING:
                problems.append(f"{name}: is required")
            continue
        problem = _problem(hints[name], value[name])
        if problem:
            problems.append(f"{name}: {problem}")
        else:
            given[name] = _frozen(value[name])
    if problems:
        raise ArgumentsInvalid(problems)
    return cls(**given)


def _schema_of(hint: Any, where: str) -> dict[str, Any]:
    inner = _without_none(hint)
    if inner is not hint:
        schema = _schema_of(inner, where)
        schema["type"] = [schema["type"], "null"]
        return schema
    if hint is str:
        return {"type": "string"}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    if get_origin(hint) is Literal:
        return {"type": "string", "enum": list(get_args(hint))}
    if get_origin(hint) in (list, tuple) and get_args(hint)[:1] == (str,):
        return {"type": "array", "items": {"type": "string"}}
    raise TypeError(f"{where}: type {hint!r} is not supported in tool arguments")


def _problem(hint: Any, value: object) -> str:
    """What is wrong with ``value`` for ``hint``; "" when nothing is."""
    inner = _without_none(hint)
    if inner is not hint:
        return "" if value is None else _problem(inner, value)
    if hint is str:
        return "" if isinstance(value, str) else "must be a string"
    if hint is bool:
        return "" if isinstance(value, bool) else "must be true or false"
    if hint is int:
        # JSON true is no integer, even though Python's bool is an int.
        ok = isinstance(value, int) and not isinstance(value, bool)
        return "" if ok else "must be an integer"
    if get_origin(hint) is Literal:
        choices = get_args(hint)
        return "" if value in choices else f"must be one of {', '.join(choices)}"
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return ""
    return "must be an array of strings"


def _without_none(hint: Any) -> Any:
    """``X`` for ``X | None``; ``hint`` itself otherwise."""
    if get_origin(hint) in (Union, types.UnionType):
        rest = [arg for arg in get_args(hint) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return hint


def _frozen(value: Any) -> Any:
    # Args dataclasses are frozen; a list inside one would not be.
    return tuple(value) if isinstance(value, list) else value
