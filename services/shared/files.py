"""Durable file writes: a crash leaves the old file or the new one, never half.

The recipe (as jupyter_server's atomic_writing): write a temp file in the
same directory (os.replace is atomic only within one file system), flush and
fsync it (the data must be on disk before the rename is, or a power cut could
leave the new name pointing at an empty file), rename it over the target,
then fsync the directory, where the rename itself lives. Temp files are named
`.<stem>.*.tmp`, so readers globbing `*.json` never see a cut-short write.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def write_atomically(path: Path, data: bytes, temp_prefix: str = "") -> None:
    """Replace path with data; create its directory if needed.

    The data is first written to a temporary file beside ``path``, named
    ``temp_prefix`` + random (by default ``.<stem>.`` + random + ``.tmp``),
    so a directory listing can tell such files apart.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(
        dir=path.parent,
        prefix=temp_prefix or f".{path.stem}.",
        suffix="" if temp_prefix else ".tmp",
    )
    try:
        with os.fdopen(fd, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    fsync_directory(path.parent)


def remove_durably(path: Path) -> None:
    """Remove path (if there) and make the removal durable."""
    path.unlink(missing_ok=True)
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Make the directory's entries (renames, removals) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
