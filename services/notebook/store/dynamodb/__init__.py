"""The DynamoDB backend (NOTEBOOK_STORE=dynamodb): several replicas, one table.

**Items.** A DynamoDB item holds at most 400 KB, and a notebook with its
outputs can hold far more, so a notebook is many items in one partition
(items.py has the exact keys): a *meta item* with the notebook's fields and
its cell list in order, each entry naming the write that holds the cell's
content, and *cell items*, a cell's document compressed and cut into parts
of at most 350 KB. Cell items are never changed in place: a changed cell is
written under a new write id, and the meta item is switched to it.

**Reading.** get() reads the meta item (a strongly consistent GetItem) every
time; when the cache already holds that revision, that is all. Otherwise
only the cells whose write the cache does not hold are fetched
(BatchGetItem), so a notebook's content is loaded lazily, once per change,
and what get() returns is current even while other replicas write. The read
takes the meta item first and then exactly the parts it names, so it never
mixes two revisions; if a newer write removed some of those parts in
between, it reads the meta item again.

**Writing.** Every create and put is conditional on the meta item: a create
on there being none, a put on ``revision = expected`` and on the
incarnation it read (a notebook deleted and created again under the same id
is another incarnation). Only the cells that changed are written. A put
that fits one request (at most 100 items and 600 KB, so any edit with at
most one large part) is one TransactWriteItems: the conditional meta item,
the new parts, and the deletion of the parts it replaces; a typical edit is
three items. A larger put (a cell with megabytes of output, a paste of
hundreds of cells; DynamoDB would refuse one transaction over 100 items or
4 MB anyway) is done in steps that stay atomic: (1) the new parts are written
under fresh keys, where nothing refers to them yet; (2) one conditional
PutItem of the meta item switches the notebook to them: this is the commit
point, and the only item two writers contend for; (3) the replaced parts are
deleted. If the condition fails, the loser deletes what it staged and gets
RevisionConflict (ABORTED) or NotebookNotFound, and drops its cached copy.
So two replicas on one table never lose each other's edits, however large.

Retried requests are made safe: a transaction carries a ClientRequestToken,
and every write records its commit id in the meta item, so a retry that
finds its condition failed because its first attempt was applied after all
recognises its own write. Throttling and transient errors are retried by
botocore ("standard" mode) and by calls.py (cancelled transactions,
unprocessed batch items), with backoff; what persists is StoreUnavailable
(UNAVAILABLE).

**Listing** queries a GSI (``owner`` → ``listing`` = create time + id),
newest first; a page token is the documents.py token of the last notebook
shown, turned into the GSI's ExclusiveStartKey.

**Limits.**

* The meta item holds the cell list: about 35 bytes a cell, so a notebook
  of more than roughly 10,000 cells cannot be stored (NotebookTooLarge).
* Listings come from a GSI and are eventually consistent: a rename or a new
  notebook may take a moment (usually well under a second) to show there.
* A process killed between the steps of a large put, or a failed
  best-effort delete, leaves unreferenced cell items behind. They are never
  read and cost only storage; deleting the notebook removes them (they share
  its incarnation's key prefix).
* delete() is not conditional (the store protocol passes no revision): the
  meta item goes first, which removes the notebook at once; its cell items
  are then swept.
* If a step-wise commit's acknowledgement is lost *and* another writer has
  already written over it by the time we look, the write is reported as a
  conflict although it was applied (nothing is lost; the client re-reads).
* Each process caches every notebook it has read (like LocalFileStore).

Credentials come from the AWS SDK's own chain (AWS_* variables, a profile,
an instance or task role) and never pass through our settings or logs.

Modules: items.py (the item layout, both ways), writes.py (what a write
writes, and committing it), calls.py (DynamoDB calls with retries, limits
and error meanings), table.py (the schema, creating the table), store.py
(DynamoDBStore: the cache, reads, the NotebookStore operations), and
__main__.py (``python -m services.notebook.store.dynamodb create-table``).
"""

from __future__ import annotations

import functools
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import aioboto3

from services.notebook.store.dynamodb.calls import client_config
from services.notebook.store.dynamodb.store import DynamoDBStore
from services.notebook.store.dynamodb.table import create_table
from services.shared.redaction import mask_url_password

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from types_aiobotocore_dynamodb.client import DynamoDBClient

    from services.notebook.store import DynamoDBSettings

__all__ = [
    "DynamoDBStore",
    "aws_session",
    "create_table",
    "open_dynamodb_client",
    "open_dynamodb_store",
]

logger = logging.getLogger(__name__)


@asynccontextmanager
async def open_dynamodb_client(
    settings: DynamoDBSettings,
) -> AsyncIterator[DynamoDBClient]:
    """A DynamoDB client for settings' region and endpoint, for the block."""
    async with aws_session().client(
        "dynamodb",
        region_name=settings.region,
        endpoint_url=settings.endpoint_url,
        config=client_config(),
    ) as client:
        yield client


@functools.cache
def aws_session() -> aioboto3.Session:
    # One per process, made on first use rather than at import: a Session
    # holds the SDK's parsed service models and endpoint data (about 0.15 s
    # to load), and a client made from a loaded one takes milliseconds.
    return aioboto3.Session()


@asynccontextmanager
async def open_dynamodb_store(
    settings: DynamoDBSettings,
) -> AsyncIterator[DynamoDBStore]:
    """A DynamoDBStore on settings' table, for the block; on exit, writes
    still in flight are waited for."""
    where = settings.region
    if settings.endpoint_url:
        where += f" at {mask_url_password(settings.endpoint_url)}"
    logger.info("notebook store: DynamoDB table %r (%s)", settings.table, where)
    async with open_dynamodb_client(settings) as client:
        store = DynamoDBStore(client, settings.table)
        try:
            yield store
        finally:
            await store.close()
