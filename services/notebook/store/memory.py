"""MemoryStore: notebooks in a dict, for tests and quick local runs.

It keeps the same promises as the durable stores (conditional put, owner
listings newest first with the same page tokens) so that code tested against
it behaves the same in production. Nothing here awaits, so every operation
is atomic on the event loop without a lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.notebook.errors import (
    NotebookAlreadyExists,
    NotebookNotFound,
    RevisionConflict,
)
from services.notebook.store import check_identity_unchanged, check_page_size
from services.notebook.store.documents import decode_page_token, encode_page_token

if TYPE_CHECKING:
    import builtins

    from services.notebook.models import Notebook, NotebookId, NotebookSummary


class MemoryStore:
    """Keeps notebooks in a dict; everything is lost when the process ends."""

    def __init__(self) -> None:
        self._notebooks: dict[NotebookId, Notebook] = {}

    async def create(self, notebook: Notebook) -> None:
        """Store a new notebook; raise NotebookAlreadyExists if the id is taken."""
        if notebook.id in self._notebooks:
            raise NotebookAlreadyExists(notebook.id)
        self._notebooks[notebook.id] = notebook

    async def get(self, notebook_id: NotebookId) -> Notebook:
        """Return the notebook or raise NotebookNotFound."""
        try:
            return self._notebooks[notebook_id]
        except KeyError:
            raise NotebookNotFound(notebook_id) from None

    async def put(
        self, notebook: Notebook, expected_revision: int, *, durable: bool = True
    ) -> None:
        """Replace the notebook if it is still at expected_revision."""
        current = await self.get(notebook.id)
        if current.revision != expected_revision:
            raise RevisionConflict(notebook.id, expected_revision, current.revision)
        check_identity_unchanged(current, notebook)
        self._notebooks[notebook.id] = notebook

    async def delete(self, notebook_id: NotebookId) -> None:
        """Remove the notebook or raise NotebookNotFound."""
        if self._notebooks.pop(notebook_id, None) is None:
            raise NotebookNotFound(notebook_id)

    async def list(
        self, owner: str, page_size: int, page_token: str
    ) -> tuple[builtins.list[NotebookSummary], str]:
        """Return one page of the owner's notebooks, newest first, and the
        next page's token ("" on the last page)."""
        check_page_size(page_size)
        after = decode_page_token(owner, page_token) if page_token else None
        keys = sorted(
            (
                (notebook.create_time, notebook.id)
                for notebook in self._notebooks.values()
                if notebook.owner == owner
            ),
            reverse=True,
        )
        if after is not None:
            keys = [key for key in keys if key < after]
        page = [
            self._notebooks[notebook_id].summary()
            for _, notebook_id in keys[:page_size]
        ]
        if len(keys) <= page_size:
            return page, ""
        return page, encode_page_token(owner, keys[page_size - 1])
