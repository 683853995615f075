"""``MeasuredStore``: any backend, timed and its write conflicts counted.

``open_store`` wraps whichever backend it opens in this, so every backend is
measured the same way and none carries metrics code of its own (the
metrics are in ``services.notebook.metrics``): each call timed, and each
conditional write the store refused (RevisionConflict) counted.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

from services.notebook.errors import RevisionConflict
from services.notebook.metrics import REVISION_CONFLICTS, STORE_SECONDS

if TYPE_CHECKING:
    from collections.abc import Iterator

    from services.notebook.models import Notebook, NotebookId, NotebookSummary
    from services.notebook.store import NotebookStore


class MeasuredStore:
    """A ``NotebookStore`` that times each call of the one it wraps."""

    def __init__(self, inner: NotebookStore, backend: str) -> None:
        self._inner = inner
        self._backend = backend

    async def create(self, notebook: Notebook) -> None:
        with self._timed("create"):
            await self._inner.create(notebook)

    async def get(self, notebook_id: NotebookId) -> Notebook:
        with self._timed("get"):
            return await self._inner.get(notebook_id)

    async def put(
        self, notebook: Notebook, expected_revision: int, *, durable: bool = True
    ) -> None:
        with self._timed("put"):
            try:
                await self._inner.put(notebook, expected_revision, durable=durable)
            except RevisionConflict:
                REVISION_CONFLICTS.labels("store").inc()
                raise

    async def delete(self, notebook_id: NotebookId) -> None:
        with self._timed("delete"):
            await self._inner.delete(notebook_id)

    async def list(
        self, owner: str, page_size: int, page_token: str
    ) -> tuple[list[NotebookSummary], str]:
        with self._timed("list"):
            return await self._inner.list(owner, page_size, page_token)

    @contextmanager
    def _timed(self, operation: str) -> Iterator[None]:
        started = time.perf_counter()
        outcome = "error"
        try:
            yield
            outcome = "ok"
        finally:
            STORE_SECONDS.labels(self._backend, operation, outcome).observe(
                time.perf_counter() - started
            )
