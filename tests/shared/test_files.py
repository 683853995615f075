"""Atomic, durable file writes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from services.shared.files import remove_durably, write_atomically

if TYPE_CHECKING:
    from pathlib import Path


def test_write_replaces_the_file_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "doc.json"

    write_atomically(target, b"old")
    write_atomically(target, b"new")

    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["doc.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "doc.json"
    write_atomically(target, b"old")

    with pytest.raises(TypeError):
        write_atomically(target, "not bytes")  # type: ignore[arg-type]

    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]


def test_remove_is_idempotent(tmp_path: Path) -> None:
    target = tmp_path / "doc.json"
    write_atomically(target, b"x")

    remove_durably(target)
    remove_durably(target)

    assert not target.exists()
