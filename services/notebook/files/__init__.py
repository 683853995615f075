"""The files of a notebook: its working directory, kept by the service.

A notebook's files live under one directory per notebook; a path is always
relative to it, `/`-separated, and checked before any file system call
(`paths.py`) so that no path names anything outside. Sizes are capped per
file and per user (all files of all the user's notebooks), and a write that
would pass a cap is refused before anything is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from services.notebook.errors import FileQuotaExceeded, FileTooLarge

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from services.notebook.models import NotebookId


@dataclass(frozen=True)
class StoredFile:
    """A file's listing entry."""

    path: str
    size_bytes: int
    update_time: datetime


@dataclass(frozen=True)
class FileLimits:
    """How large one file, and all of one user's files, may be."""

    max_file_bytes: int
    max_user_bytes: int


class FileStore(Protocol):
    """Where notebooks' files are kept. Paths are already checked."""

    limits: FileLimits

    async def put(
        self, owner: str, notebook_id: NotebookId, path: str, content: bytes
    ) -> StoredFile:
        """Store a file; raise FileTooLarge or FileQuotaExceeded first."""
        ...

    async def listing(self, owner: str, notebook_id: NotebookId) -> list[StoredFile]:
        """The notebook's files, sorted by path."""
        ...

    async def get(
        self, owner: str, notebook_id: NotebookId, path: str
    ) -> tuple[StoredFile, bytes]:
        """A file and its bytes; raise FileNotFound."""
        ...

    async def delete(self, owner: str, notebook_id: NotebookId, path: str) -> None:
        """Delete a file; raise FileNotFound."""
        ...

    async def delete_all(self, owner: str, notebook_id: NotebookId) -> None:
        """Delete every file of a notebook (when the notebook goes)."""
        ...

    async def used_bytes(self, owner: str) -> int:
        """How many bytes all files of the owner's notebooks take."""
        ...


async def check_room(
    store: FileStore, owner: str, files: Sequence[tuple[str, bytes]]
) -> None:
    """Raise FileTooLarge or FileQuotaExceeded unless all `files` (new
    ones: an import's) fit, before any is stored."""
    for path, content in files:
        if len(content) > store.limits.max_file_bytes:
            raise FileTooLarge(path, len(content), store.limits.max_file_bytes)
    adding = sum(len(content) for _, content in files)
    used = await store.used_bytes(owner)
    if files and used + adding > store.limits.max_user_bytes:
        raise FileQuotaExceeded(used, adding, store.limits.max_user_bytes)
