"""Where notebooks are kept: the NotebookStore protocol and open_store().

Every backend keeps whole notebook documents and makes each write
conditional on the revision the writer read, so two writers (two requests,
or two service replicas) can never silently overwrite each other: the loser
gets RevisionConflict and the caller decides (the service answers ABORTED).

Backends: memory.py (tests, quick runs), local.py (JSON files, the default),
dynamodb/ (a DynamoDB table, for several replicas); documents.py holds the
JSON encoding and page tokens they share.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from services.notebook.models import Notebook, NotebookId, NotebookSummary

logger = logging.getLogger(__name__)

STORE_KINDS: Final = ("local", "memory", "dynamodb")
"""The values of NOTEBOOK_STORE."""

DEFAULT_DYNAMODB_TABLE: Final = "reflow-notebooks"
DEFAULT_DYNAMODB_REGION: Final = "us-east-1"


@dataclass(frozen=True)
class DynamoDBSettings:
    """Where the "dynamodb" backend keeps notebooks (NOTEBOOK_DYNAMODB_*).

    Credentials are not here: the AWS SDK finds them itself (AWS_* variables,
    a profile, an instance or task role), so they never pass through our
    settings or logs.
    """

    table: str = DEFAULT_DYNAMODB_TABLE
    region: str = DEFAULT_DYNAMODB_REGION
    # A local DynamoDB (dynamodb-local, moto); None means AWS itself.
    endpoint_url: str | None = None


class NotebookStore(Protocol):
    """Persistent notebooks, keyed by id, listable by owner."""

    async def create(self, notebook: Notebook) -> None:
        """Store a new notebook; raise NotebookAlreadyExists if the id is taken."""
        ...

    async def get(self, notebook_id: NotebookId) -> Notebook:
        """Return the notebook; raise NotebookNotFound or NotebookCorrupt."""
        ...

    async def put(
        self, notebook: Notebook, expected_revision: int, *, durable: bool = True
    ) -> None:
        """Replace the stored notebook if its revision is expected_revision.

        Raise RevisionConflict (with the stored revision) otherwise, and
        NotebookNotFound if it no longer exists. ``durable=False`` (a recorded
        run result, which a re-run recreates) lets a store answer once every
        reader sees the new notebook and make it durable moments later; an
        edit is always durable before put returns.
        """
        ...

    async def delete(self, notebook_id: NotebookId) -> None:
        """Remove the notebook; raise NotebookNotFound if there is none."""
        ...

    async def list(
        self, owner: str, page_size: int, page_token: str
    ) -> tuple[list[NotebookSummary], str]:
        """Return one page of the owner's notebooks, newest first, and the
        token of the next page ("" on the last page). Raise InvalidPageToken
        for a token this store did not issue."""
        ...


@asynccontextmanager
async def open_store(
    kind: str, data_dir: Path, dynamodb: DynamoDBSettings | None = None
) -> AsyncIterator[NotebookStore]:
    """Open the backend named by NOTEBOOK_STORE for the life of the block.

    data_dir is used by the "local" backend only, dynamodb (default:
    DynamoDBSettings()) by the "dynamodb" backend only. On exit, writes still
    in flight (a caller may have been cancelled while its write finished) are
    waited for, so the process never exits half-way through one.
    """
    # Imported here, not at the top: the backends import the rules below from
    # this package, and a backend's dependencies are only needed when chosen.
    from services.notebook.store.local import LocalFileStore
    from services.notebook.store.measured import MeasuredStore
    from services.notebook.store.memory import MemoryStore

    if kind == "memory":
        logger.info("notebook store: in memory (lost on exit)")
        yield MeasuredStore(MemoryStore(), kind)
    elif kind == "local":
        logger.info("notebook store: local files in %s", data_dir)
        store = LocalFileStore(data_dir)
        try:
            yield MeasuredStore(store, kind)
        finally:
            await store.close()
    elif kind == "dynamodb":
        # Imported only when chosen: aioboto3 is the notebook extra's, and
        # importing it costs a noticeable fraction of a second.
        from services.notebook.store.dynamodb import open_dynamodb_store

        async with open_dynamodb_store(dynamodb or DynamoDBSettings()) as opened:
            yield MeasuredStore(opened, kind)
    else:
        raise ValueError(f"NOTEBOOK_STORE={kind!r}; expected one of {STORE_KINDS}")


def check_identity_unchanged(stored: Notebook, replacement: Notebook) -> None:
    """Refuse a put that would give a notebook another owner or create_time.

    Listings are indexed by (owner, create_time); a put changing them would
    leave an index pointing at the wrong owner. No edit changes them, so a put
    that does is a bug in the caller: ValueError, not a domain error.
    """
    if (replacement.owner, replacement.create_time) != (
        stored.owner,
        stored.create_time,
    ):
        raise ValueError(
            f"a put may not change notebook {stored.id!r}'s owner or create_time"
        )


def check_page_size(page_size: int) -> None:
    """Refuse a page size the service should already have defaulted."""
    if page_size < 1:
        raise ValueError(f"page_size is {page_size}; it must be at least 1")
