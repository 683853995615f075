"""Notebook files in a local directory: <root>/<owner>/<notebook id>/<path>.

The owner's directory is named by a digest of the owner, since a token's
subject may hold any character. Writes go to a temporary file that is
renamed into place, so a reader never sees half a file; no path part may be
a symbolic link (a cell could create one once kernels work in this
directory), so nothing is read or written outside it. The per-user cap is
checked under a per-user lock, so two writes cannot both squeeze under it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from services.notebook.errors import FileNotFound, FileQuotaExceeded
from services.notebook.files import FileLimits, StoredFile, check_size
from services.shared.files import write_atomically

if TYPE_CHECKING:
    from services.notebook.models import NotebookId


# A file being written; never listed (a crash may leave one behind).
_TEMP_PREFIX: Final = ".put-"


class LocalFileStore:
    """Keeps notebooks' files under a root directory."""

    def __init__(self, root: Path, limits: FileLimits) -> None:
        self._root = root
        self.limits = limits
        self._locks: dict[str, asyncio.Lock] = {}

    async def put(
        self, owner: str, notebook_id: NotebookId, path: str, content: bytes
    ) -> StoredFile:
        check_size(self.limits, path, content)
        async with self._locks.setdefault(owner, asyncio.Lock()):
            return await asyncio.to_thread(self._put, owner, notebook_id, path, content)

    def _put(
        self, owner: str, notebook_id: NotebookId, path: str, content: bytes
    ) -> StoredFile:
        # Before anything touches the disk: mkdir through a link would
        # create directories outside.
        self._refuse_links(owner, notebook_id, path)
        target = self._file(owner, notebook_id, path)
        replaced = target.stat().st_size if target.is_file() else 0
        used = _tree_bytes(self._user_dir(owner))
        if used - replaced + len(content) > self.limits.max_user_bytes:
            raise FileQuotaExceeded(used, len(content), self.limits.max_user_bytes)
        write_atomically(target, content, temp_prefix=_TEMP_PREFIX)
        return _stored(path, target)

    async def listing(self, owner: str, notebook_id: NotebookId) -> list[StoredFile]:
        return await asyncio.to_thread(self._list, owner, notebook_id)

    def _list(self, owner: str, notebook_id: NotebookId) -> list[StoredFile]:
        base = self._notebook_dir(owner, notebook_id)
        if not base.is_dir():
            return []
        found = []
        for directory, folders, names in os.walk(base):
            # Symbolic links are not the notebook's files: not followed, not listed.
            folders[:] = [f for f in folders if not Path(directory, f).is_symlink()]
            for name in names:
                file = Path(directory, name)
                if name.startswith(_TEMP_PREFIX) or file.is_symlink():
                    continue
                found.append(_stored(file.relative_to(base).as_posix(), file))
        return sorted(found, key=lambda f: f.path)

    async def get(
        self, owner: str, notebook_id: NotebookId, path: str
    ) -> tuple[StoredFile, bytes]:
        return await asyncio.to_thread(self._get, owner, notebook_id, path)

    def _get(
        self, owner: str, notebook_id: NotebookId, path: str
    ) -> tuple[StoredFile, bytes]:
        target = self._existing(owner, notebook_id, path)
        return _stored(path, target), target.read_bytes()

    async def delete(self, owner: str, notebook_id: NotebookId, path: str) -> None:
        await asyncio.to_thread(self._delete, owner, notebook_id, path)

    def _delete(self, owner: str, notebook_id: NotebookId, path: str) -> None:
        self._existing(owner, notebook_id, path).unlink()

    async def delete_all(self, owner: str, notebook_id: NotebookId) -> None:
        base = self._notebook_dir(owner, notebook_id)
        await asyncio.to_thread(shutil.rmtree, base, True)

    async def used_bytes(self, owner: str) -> int:
        return await asyncio.to_thread(_tree_bytes, self._user_dir(owner))

    def _existing(self, owner: str, notebook_id: NotebookId, path: str) -> Path:
        target = self._file(owner, notebook_id, path)
        self._refuse_links(owner, notebook_id, path)
        if not target.is_file():
            raise FileNotFound(notebook_id, path)
        return target

    def _refuse_links(self, owner: str, notebook_id: NotebookId, path: str) -> None:
        """Raise FileNotFound if any part of the path is a symbolic link."""
        current = self._notebook_dir(owner, notebook_id)
        for part in path.split("/"):
            current = current / part
            if current.is_symlink():
                raise FileNotFound(notebook_id, path)

    def _user_dir(self, owner: str) -> Path:
        return self._root / hashlib.sha256(owner.encode()).hexdigest()[:32]

    def _notebook_dir(self, owner: str, notebook_id: NotebookId) -> Path:
        return self._user_dir(owner) / notebook_id

    def _file(self, owner: str, notebook_id: NotebookId, path: str) -> Path:
        return self._notebook_dir(owner, notebook_id).joinpath(*path.split("/"))


def _stored(path: str, file: Path) -> StoredFile:
    status = file.stat()
    when = datetime.fromtimestamp(status.st_mtime, UTC)
    return StoredFile(path, status.st_size, when)


def _tree_bytes(root: Path) -> int:
    total = 0
    for directory, _, names in os.walk(root):
        for name in names:
            file = Path(directory, name)
            if not file.is_symlink():
                total += file.stat().st_size
    return total
