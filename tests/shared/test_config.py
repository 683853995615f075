"""Tests for services.shared.config.EnvReader."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.shared.config import ConfigError, EnvReader


def reader(**env: str) -> EnvReader:
    """An EnvReader with prefix NOTEBOOK_ over ``env`` (keys without the prefix)."""
    return EnvReader({f"NOTEBOOK_{k}": v for k, v in env.items()}, prefix="NOTEBOOK_")


def test_text_reads_the_prefixed_variable() -> None:
    assert reader(TABLE="cells").text("TABLE", "notebooks") == "cells"


def test_unset_variable_gives_the_default() -> None:
    assert reader().text("TABLE", "notebooks") == "notebooks"


def test_empty_variable_counts_as_unset() -> None:
    assert reader(PORT="").integer("PORT", 50051) == 50051


def test_variable_of_another_prefix_is_ignored() -> None:
    read = EnvReader({"EXECUTION_PORT": "1"}, prefix="NOTEBOOK_")

    assert read.integer("PORT", 50051) == 50051


def test_integer_is_parsed() -> None:
    assert reader(PORT=" 6000 ").integer("PORT", 50051) == 6000


def test_non_integer_names_the_variable_and_value() -> None:
    with pytest.raises(ConfigError) as error:
        reader(PORT="abc").integer("PORT", 50051)

    assert str(error.value) == "NOTEBOOK_PORT='abc' is not an integer"


def test_integer_below_the_minimum_is_refused() -> None:
    with pytest.raises(ConfigError) as error:
        reader(WORKERS="0").integer("WORKERS", 4, minimum=1)

    assert str(error.value) == "NOTEBOOK_WORKERS='0' must be at least 1"


def test_number_is_parsed() -> None:
    assert reader(TIMEOUT_S="2.5").number("TIMEOUT_S", 5.0) == 2.5


def test_non_number_names_the_variable_and_value() -> None:
    with pytest.raises(ConfigError) as error:
        reader(TIMEOUT_S="soon").number("TIMEOUT_S", 5.0)

    assert str(error.value) == "NOTEBOOK_TIMEOUT_S='soon' is not a number"


def test_infinite_number_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a finite number"):
        reader(TIMEOUT_S="inf").number("TIMEOUT_S", 5.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("true", True),
        ("Yes", True),
        ("ON", True),
        ("0", False),
        ("false", False),
        ("no", False),
        ("off", False),
    ],
)
def test_boolean_words_are_understood(value: str, expected: bool) -> None:
    assert reader(LAZY=value).boolean("LAZY", not expected) is expected


def test_unknown_boolean_names_the_variable_and_value() -> None:
    with pytest.raises(ConfigError, match=r"^NOTEBOOK_LAZY='maybe' is not a boolean"):
        reader(LAZY="maybe").boolean("LAZY", False)


def test_path_is_a_path() -> None:
    assert reader(DATA_DIR="/srv/nb").path("DATA_DIR", "data") == Path("/srv/nb")


def test_path_default_is_a_path() -> None:
    assert reader().path("DATA_DIR", "data/notebooks") == Path("data/notebooks")


def test_path_expands_the_home_directory() -> None:
    assert reader(DATA_DIR="~/nb").path("DATA_DIR", "data") == Path.home() / "nb"


def test_choice_accepts_a_listed_value() -> None:
    read = reader(STORE="dynamodb")

    assert read.choice("STORE", ("local", "dynamodb"), "local") == "dynamodb"


def test_unknown_choice_names_the_variable_value_and_choices() -> None:
    with pytest.raises(ConfigError) as error:
        reader(STORE="s3").choice("STORE", ("local", "dynamodb"), "local")

    assert (
        str(error.value) == "NOTEBOOK_STORE='s3'; expected one of ('local', 'dynamodb')"
    )


def test_secret_is_read() -> None:
    assert reader(API_KEY="k-123").secret("API_KEY") == "k-123"


def test_missing_secret_names_the_variable() -> None:
    with pytest.raises(ConfigError) as error:
        reader().secret("API_KEY")

    assert str(error.value) == "NOTEBOOK_API_KEY is required but not set"


def test_optional_text_is_none_when_unset() -> None:
    assert reader().optional_text("DATABASE_URL") is None


def test_optional_text_is_read_when_set() -> None:
    assert reader(DATABASE_URL="sqlite://").optional_text("DATABASE_URL") == "sqlite://"
