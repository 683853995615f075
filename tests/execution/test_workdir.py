"""The kernel's side of its working directory (kernel/workdir.py), on a real
directory: what it reports after a cell, and what it leaves alone."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from services.execution.kernel import workdir
from services.execution.kernel.workdir import Workdir

if TYPE_CHECKING:
    from pathlib import Path

    from reflow.execution.v1 import kernel_pb2


def _changes(directory: Workdir) -> dict[str, kernel_pb2.FileChanged]:
    return {change.path: change for change in directory.changes()}


def test_an_unchanged_directory_reports_nothing(tmp_path: Path) -> None:
    directory = Workdir(str(tmp_path), 100)
    directory.write("data/a.csv", b"1,2")

    assert _changes(directory) == {}
    assert (tmp_path / "data" / "a.csv").read_bytes() == b"1,2"


def test_added_changed_and_deleted_files_are_reported_once(tmp_path: Path) -> None:
    directory = Workdir(str(tmp_path), 100)
    directory.write("old.txt", b"old")
    directory.write("same.txt", b"same")
    (tmp_path / "new.txt").write_bytes(b"new")
    (tmp_path / "old.txt").unlink()
    (tmp_path / "same.txt").write_bytes(b"SAME")

    changes = _changes(directory)

    assert {path: (c.content, c.deleted) for path, c in changes.items()} == {
        "new.txt": (b"new", False),
        "old.txt": (b"", True),
        "same.txt": (b"SAME", False),
    }
    assert _changes(directory) == {}


def test_links_fifos_and_big_files_are_not_read(tmp_path: Path) -> None:
    directory = Workdir(str(tmp_path), 10)
    (tmp_path / "passwd").symlink_to("/etc/passwd")
    (tmp_path / "root").symlink_to("/")
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "big.bin").write_bytes(b"x" * 11)

    changes = _changes(directory)

    assert list(changes) == ["big.bin"]
    assert changes["big.bin"].too_large
    assert changes["big.bin"].size_bytes == 11
    assert changes["big.bin"].content == b""


def test_a_name_that_is_not_utf8_travels_escaped(tmp_path: Path) -> None:
    directory = Workdir(str(tmp_path), 10)
    (tmp_path / os.fsdecode(b"\xff.txt")).write_bytes(b"x")

    assert list(_changes(directory)) == ["\\xff.txt"]


def test_a_scan_cut_short_reports_no_deletion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = Workdir(str(tmp_path), 10)
    directory.write("kept.txt", b"k")
    for index in range(5):
        (tmp_path / f"f{index}").write_bytes(b"")
    monkeypatch.setattr(workdir, "MAX_ENTRIES", 3)

    changes = _changes(directory)

    assert not any(change.deleted for change in changes.values())


@pytest.mark.parametrize("path", ["../x", "/etc/x", "a//b", "./a", ""])
def test_paths_from_the_service_cannot_leave_the_directory(
    tmp_path: Path, path: str
) -> None:
    directory = Workdir(str(tmp_path / "work"), 10)

    with pytest.raises(ValueError, match="not a relative path"):
        directory.write(path, b"x")
