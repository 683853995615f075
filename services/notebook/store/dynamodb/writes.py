"""What a create or put writes, and making it current atomically.

plan_write() is pure (and CPU-bound: it compresses the changed cells, so the
store runs it in a worker thread): from the notebook to store and the cells
already stored, it works out the new meta item, the part items of the cells
that changed (under the new write id) and the part items that the new meta
item no longer refers to.

Writer.commit() applies a plan under a condition on the meta item, in one
TransactWriteItems when it fits one request, otherwise in three steps:
stage the new parts (nothing refers to them yet), switch the meta item with
one conditional PutItem (the commit point), delete what is obsolete. See the
package docstring for why that is atomic and what it can leave behind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from services.notebook.errors import NotebookTooLarge, StoreUnavailable
from services.notebook.store.dynamodb.calls import (
    MAX_REQUEST_BYTES,
    MAX_TRANSACTION_ITEMS,
    ConditionFailed,
    batch_write,
    get_item,
    put_if,
    query_keys,
    transact_write,
)
from services.notebook.store.dynamodb.items import (
    META_BYTES_LIMIT,
    CellRef,
    Item,
    Key,
    cells_prefix,
    encode_cell,
    item_size,
    key_item,
    meta_item,
    meta_key,
    part_item,
    part_keys,
    partition,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from types_aiobotocore_dynamodb.client import DynamoDBClient

    from services.notebook.models import Cell, CellId, Notebook, NotebookId

logger = logging.getLogger(__name__)


class Condition(NamedTuple):
    """A ConditionExpression on the meta item, with its names and values."""

    expression: str
    names: dict[str, str] | None = None
    values: Item | None = None

    def parameters(self) -> dict[str, Any]:
        """As request parameters (DynamoDB refuses empty name or value maps)."""
        parameters: dict[str, Any] = {"ConditionExpression": self.expression}
        if self.names:
            parameters["ExpressionAttributeNames"] = self.names
        if self.values:
            parameters["ExpressionAttributeValues"] = self.values
        return parameters


CREATE_CONDITION = Condition("attribute_not_exists(PK)")


def put_condition(expected_revision: int, incarnation: str) -> Condition:
    """The condition of a put: the stored notebook is the one it was based on."""
    return Condition(
        "#revision = :expected AND #incarnation = :incarnation",
        {"#revision": "revision", "#incarnation": "incarnation"},
        {
            ":expected": {"N": str(expected_revision)},
            ":incarnation": {"S": incarnation},
        },
    )


@dataclass(frozen=True)
class Write:
    """Everything one create or put writes."""

    notebook_id: NotebookId
    commit: str
    refs: tuple[CellRef, ...]
    meta: Item
    parts: list[Item]
    obsolete: list[Key]

    def fits_one_request(self) -> bool:
        """Whether one TransactWriteItems can carry the whole write."""
        count = 1 + len(self.parts) + len(self.obsolete)
        size = item_size(self.meta) + sum(item_size(part) for part in self.parts)
        return count <= MAX_TRANSACTION_ITEMS and size <= MAX_REQUEST_BYTES


def plan_write(
    notebook: Notebook,
    incarnation: str,
    commit: str,
    stored_cells: Mapping[CellId, Cell],
    stored_refs: Mapping[CellId, CellRef],
) -> Write:
    """The write that stores notebook over the stored cells (none for a
    create): unchanged cells keep their items, changed ones get new ones
    under commit. NotebookTooLarge if the meta item would not fit."""
    if len({cell.id for cell in notebook.cells}) != len(notebook.cells):
        raise ValueError(f"notebook {notebook.id!r} has two cells with one id")
    refs: list[CellRef] = []
    parts: list[Item] = []
    for cell in notebook.cells:
        if _same(stored_cells.get(cell.id), cell):
            refs.append(stored_refs[cell.id])
            continue
        bodies = encode_cell(cell)
        ref = CellRef(cell.id, commit, len(bodies))
        refs.append(ref)
        keys = part_keys(notebook.id, incarnation, ref)
        parts += [part_item(key, body) for key, body in zip(keys, bodies, strict=True)]
    kept = {(ref.cell_id, ref.write_id) for ref in refs}
    obsolete = [
        key
        for ref in stored_refs.values()
        if (ref.cell_id, ref.write_id) not in kept
        for key in part_keys(notebook.id, incarnation, ref)
    ]
    meta = meta_item(notebook, incarnation, commit, refs)
    if item_size(meta) > META_BYTES_LIMIT:
        raise NotebookTooLarge(
            notebook.id,
            f"its {len(refs)} cells overflow one DynamoDB item's list of cells",
        )
    return Write(notebook.id, commit, tuple(refs), meta, parts, obsolete)


class Writer:
    """Applies writes to one table."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    async def commit(self, write: Write, condition: Condition) -> None:
        """Make write current, atomically. ConditionFailed if condition does
        not hold on the meta item (and it does not already hold our write)."""
        if not write.fits_one_request():
            await self._commit_in_steps(write, condition)
            return
        actions: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": write.meta,
                    **condition.parameters(),
                }
            }
        ]
        actions += [
            {"Put": {"TableName": self._table, "Item": part}} for part in write.parts
        ]
        actions += [
            {"Delete": {"TableName": self._table, "Key": key_item(key)}}
            for key in write.obsolete
        ]
        try:
            await transact_write(self._client, actions, write.commit)
        except ConditionFailed:
            if not await self._is_current(write):
                raise

    async def discard(self, notebook_id: NotebookId, keys: Sequence[Key]) -> None:
        """Delete items nothing refers to; failing only leaves garbage behind."""
        if not keys:
            return
        try:
            await batch_write(self._client, self._table, deletes=keys)
        except (ClientError, BotoCoreError, StoreUnavailable) as error:
            logger.warning(
                "left %d unreferenced cell items of notebook %r behind: %s",
                len(keys),
                notebook_id,
                type(error).__name__,
            )

    async def sweep(self, notebook_id: NotebookId, incarnation: str) -> None:
        """Remove every cell item of a deleted notebook's incarnation."""
        try:
            keys = await query_keys(
                self._client,
                self._table,
                partition(notebook_id),
                cells_prefix(incarnation),
            )
        except (ClientError, BotoCoreError, StoreUnavailable) as error:
            logger.warning(
                "could not list the cell items of deleted notebook %r: %s",
                notebook_id,
                type(error).__name__,
            )
            return
        await self.discard(notebook_id, keys)

    async def _commit_in_steps(self, write: Write, condition: Condition) -> None:
        staged = [(part["PK"]["S"], part["SK"]["S"]) for part in write.parts]
        try:
            await batch_write(self._client, self._table, puts=write.parts)
        except BaseException:
            # Not committed, so nothing refers to what was staged.
            await self.discard(write.notebook_id, staged)
            raise
        try:
            await put_if(
                self._client,
                self._table,
                write.meta,
                condition.expression,
                condition.names,
                condition.values,
            )
        except ConditionFailed:
            if not await self._is_current(write):
                await self.discard(write.notebook_id, staged)
                raise
        await self.discard(write.notebook_id, write.obsolete)

    async def _is_current(self, write: Write) -> bool:
        """Whether the meta item is write's: a retried request whose first
        attempt was applied fails its condition on our own write."""
        item = await get_item(self._client, self._table, meta_key(write.notebook_id))
        return item is not None and item.get("commit", {}).get("S") == write.commit


def _same(stored: Cell | None, cell: Cell) -> bool:
    # Edits keep unchanged cells as the same objects, so `is` decides almost
    # always without comparing outputs.
    return stored is not None and (stored is cell or stored == cell)
