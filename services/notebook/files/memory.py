"""Notebook files in memory: for tests and a service run without a disk."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from services.notebook.errors import FileNotFound, FileQuotaExceeded
from services.notebook.files import FileLimits, StoredFile, check_size

if TYPE_CHECKING:
    from services.notebook.models import NotebookId

DEFAULT_LIMITS = FileLimits(
    max_file_bytes=8 * 1024 * 1024, max_user_bytes=64 * 1024 * 1024
)


class MemoryFileStore:
    """Keeps files in a dict keyed by (owner, notebook id, path)."""

    def __init__(self, limits: FileLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._files: dict[tuple[str, str, str], tuple[StoredFile, bytes]] = {}

    async def put(
        self, owner: str, notebook_id: NotebookId, path: str, content: bytes
    ) -> StoredFile:
        check_size(self.limits, path, content)
        key = (owner, notebook_id, path)
        replaced = self._files[key][0].size_bytes if key in self._files else 0
        used = await self.used_bytes(owner)
        if used - replaced + len(content) > self.limits.max_user_bytes:
            raise FileQuotaExceeded(used, len(content), self.limits.max_user_bytes)
        stored = StoredFile(path, len(content), datetime.now(UTC))
        self._files[key] = (stored, content)
        return stored

    async def listing(self, owner: str, notebook_id: NotebookId) -> list[StoredFile]:
        found = [
            stored
            for (o, n, _), (stored, _) in self._files.items()
            if (o, n) == (owner, notebook_id)
        ]
        return sorted(found, key=lambda f: f.path)

    async def get(
        self, owner: str, notebook_id: NotebookId, path: str
    ) -> tuple[StoredFile, bytes]:
        try:
            return self._files[(owner, notebook_id, path)]
        except KeyError:
            raise FileNotFound(notebook_id, path) from None

    async def delete(self, owner: str, notebook_id: NotebookId, path: str) -> None:
        if self._files.pop((owner, notebook_id, path), None) is None:
            raise FileNotFound(notebook_id, path)

    async def delete_all(self, owner: str, notebook_id: NotebookId) -> None:
        for key in [k for k in self._files if k[:2] == (owner, notebook_id)]:
            del self._files[key]

    async def used_bytes(self, owner: str) -> int:
        return sum(
            s.size_bytes for (o, _, _), (s, _) in self._files.items() if o == owner
        )
