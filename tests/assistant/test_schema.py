"""Tool arguments: the schema the model sees and the check of what it sends."""

from __future__ import annotations

import pytest

from services.assistant.schema import ArgumentsInvalid, json_schema, parse_arguments
from services.assistant.tools import TOOLS, CreateCellArgs, RunCellsArgs


def test_schema_lists_types_descriptions_and_required_fields() -> None:
    schema = json_schema(CreateCellArgs)

    assert schema["required"] == ["code"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["type"]["enum"] == ["python", "sql", "markdown"]
    assert schema["properties"]["index"]["type"] == ["integer", "null"]
    assert schema["properties"]["code"]["description"]


def test_every_tool_has_a_description_and_a_schema() -> None:
    for tool in TOOLS:
        spec = tool.spec()

        assert len(spec.description) > 40, tool.name
        assert spec.parameters["type"] == "object"


def test_valid_arguments_get_their_defaults() -> None:
    args = parse_arguments(CreateCellArgs, {"code": "x = 1"})

    assert args == CreateCellArgs(code="x = 1", type="python")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({}, "code: is required"),
        ({"code": 1}, "code: must be a string"),
        ({"code": "x", "index": True}, "index: must be an integer"),
        ({"code": "x", "type": "rust"}, "type: must be one of python, sql, markdown"),
        ({"code": "x", "colour": "red"}, "colour: is not an argument of this tool"),
    ],
)
def test_invalid_arguments_say_what_is_wrong(value: object, problem: str) -> None:
    with pytest.raises(ArgumentsInvalid) as error:
        parse_arguments(CreateCellArgs, value)

    assert any(p.startswith(problem) for p in error.value.problems)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ArgumentsInvalid) as error:
        parse_arguments(CreateCellArgs, {"index": "first", "colour": "red"})

    assert len(error.value.problems) == 3


def test_lists_become_tuples() -> None:
    args = parse_arguments(RunCellsArgs, {"cell_ids": ["a", "b"]})

    assert args.cell_ids == ("a", "b")


def test_arguments_must_be_an_object() -> None:
    with pytest.raises(ArgumentsInvalid):
        parse_arguments(RunCellsArgs, ["a"])
