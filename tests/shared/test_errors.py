"""Tests for services.shared.errors."""

from __future__ import annotations

from services.shared.errors import Aborted, InvalidArgument, NotFound, ServiceError


class NotebookNotFound(NotFound):
    def __init__(self, notebook_id: str) -> None:
        super().__init__(f"notebook {notebook_id!r} does not exist")


def test_message_is_the_string_form() -> None:
    assert str(NotebookNotFound("nb1")) == "notebook 'nb1' does not exist"


def test_reason_defaults_to_the_class_name_in_upper_snake_case() -> None:
    assert NotebookNotFound("nb1").info_reason == "NOTEBOOK_NOT_FOUND"


def test_acronyms_stay_together_in_the_default_reason() -> None:
    class LLMUnavailable(ServiceError):
        pass

    assert LLMUnavailable("down").info_reason == "LLM_UNAVAILABLE"


def test_explicit_reason_wins() -> None:
    assert NotFound("x", reason="CELL_GONE").info_reason == "CELL_GONE"


def test_field_violations_are_kept_as_pairs() -> None:
    error = InvalidArgument("bad", field_violations=[("name", "is empty")])

    assert [(v.field, v.description) for v in error.field_violations] == [
        ("name", "is empty")
    ]


def test_aborted_puts_the_current_revision_in_metadata() -> None:
    assert Aborted("stale", current_revision=3).metadata == {"current_revision": "3"}


def test_aborted_reads_the_current_revision_back_from_metadata() -> None:
    error = Aborted("stale", metadata={"current_revision": "3"})

    assert error.current_revision == 3


def test_aborted_without_revision_has_none() -> None:
    assert Aborted("stale").current_revision is None


def test_metadata_is_copied() -> None:
    metadata = {"notebook_id": "nb1"}
    error = NotFound("x", metadata=metadata)

    metadata["notebook_id"] = "nb2"

    assert error.metadata == {"notebook_id": "nb1"}
