"""The files of a notebook: its working directory, kept by the service.

A notebook's files live under one directory per notebook; a path is always
relative to it, `/`-separated, and checked before any file system call
(`paths.py`) so that no path names anything outside. Sizes are capped per
file and per user (all files of all the user's notebooks), and a write that
would pass a cap is refused before anything is stored.

Stores: `local.py` (a directory; the default), `memory.py` (tests), and
`s3.py` (an S3 bucket, with the DynamoDB notebook store, so that replicas
share the files); `open_file_store` picks the one that goes with the
notebook store. The same test suite runs on all three.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from services.notebook.errors import FileQuotaExceeded, FileTooLarge

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from datetime import datetime
    from pathlib import Path

    from services.notebook.models import NotebookId


@dataclass(frozen=True)
class StoredFile:
    """A file's listing entry."""

    path: str
    size_bytes: int
    update_time: datetime


DEFAULT_S3_BUCKET: Final = "reflow-notebook-files"


@dataclass(frozen=True)
class S3Settings:
    """Where files go with the DynamoDB store: NOTEBOOK_S3_* (the endpoint
    of a local S3, such as moto's, or none for AWS)."""

    bucket: str = DEFAULT_S3_BUCKET
    region: str = "us-east-1"
    endpoint_url: str | None = None


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


def check_size(limits: FileLimits, path: str, content: bytes) -> None:
    """Raise FileTooLarge if `content` is more than one file may hold."""
    if len(content) > limits.max_file_bytes:
        raise FileTooLarge(path, len(content), limits.max_file_bytes)


async def check_room(
    store: FileStore, owner: str, files: Sequence[tuple[str, bytes]]
) -> None:
    """Raise FileTooLarge or FileQuotaExceeded unless all `files` (new
    ones: an import's) fit, before any is stored."""
    for path, content in files:
        check_size(store.limits, path, content)
    adding = sum(len(content) for _, content in files)
    used = await store.used_bytes(owner)
    if files and used + adding > store.limits.max_user_bytes:
        raise FileQuotaExceeded(used, adding, store.limits.max_user_bytes)


@asynccontextmanager
async def open_file_store(
    store_kind: str, files_dir: Path, s3: S3Settings, limits: FileLimits
) -> AsyncIterator[FileStore]:
    """The file store that goes with the notebook store: S3 with DynamoDB
    (replicas share it), a local directory otherwise."""
    # Imported when chosen: aioboto3 takes a noticeable time to import.
    if store_kind == "dynamodb":
        from services.notebook.files.s3 import open_s3_file_store

        async with open_s3_file_store(s3, limits) as store:
            yield store
    else:
        from services.notebook.files.local import LocalFileStore

        yield LocalFileStore(files_dir, limits)
