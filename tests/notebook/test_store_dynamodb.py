"""What only the DynamoDB store promises: items under DynamoDB's 400 KB limit,
atomic puts of any size, and replicas sharing one table without losing edits.

The behaviour every backend shares is tested in test_store.py. Some tests
here read the table directly, knowing the item layout
(services/notebook/store/dynamodb/items.py): it is what they check or damage.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import re
import sys
from base64 import b64encode
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from reflow.notebook.v1 import notebook_pb2
from services.notebook.errors import (
    NotebookCorrupt,
    NotebookNotFound,
    NotebookTooLarge,
    RevisionConflict,
    StoreUnavailable,
)
from services.notebook.models import Cell, CellId, CellStatus, CellType, NotebookId
from services.notebook.store import DynamoDBSettings
from services.notebook.store.dynamodb import (
    create_table,
    open_dynamodb_client,
    open_dynamodb_store,
)
from services.notebook.store.dynamodb.items import MAX_ITEM_BYTES, item_size
from services.shared.auth import InternalTokens
from tests.notebook.conftest import notebook_stub
from tests.notebook.local_dynamodb import FAKE_AWS_ENV
from tests.notebook.samples import make_notebook

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from types_aiobotocore_dynamodb.client import DynamoDBClient

    from services.notebook.models import Notebook
    from services.notebook.store.dynamodb import DynamoDBStore
    from tests.notebook.conftest import Metadata, Stub

pytestmark = pytest.mark.dynamodb

Replicas = tuple["DynamoDBStore", "DynamoDBStore"]


@pytest.fixture
async def replicas(dynamodb_table: DynamoDBSettings) -> AsyncIterator[Replicas]:
    """Two stores on one table, as two service replicas would have."""
    async with (
        open_dynamodb_store(dynamodb_table) as first,
        open_dynamodb_store(dynamodb_table) as second,
    ):
        yield first, second


@pytest.fixture
async def client(dynamodb_table: DynamoDBSettings) -> AsyncIterator[DynamoDBClient]:
    """A raw client, to look at (and damage) the items themselves."""
    async with open_dynamodb_client(dynamodb_table) as opened:
        yield opened


def incompressible_text(size: int, seed: int) -> str:
    """size characters of base64: like a PNG output, zlib barely shrinks it."""
    data = random.Random(seed).randbytes(size * 3 // 4)
    return b64encode(data).decode("ascii")


def cell_with_output(cell_id: str, output: str) -> Cell:
    return Cell(
        id=CellId(cell_id),
        type=CellType.PYTHON,
        code=f"show({cell_id!r})",
        status=CellStatus.SUCCESS,
        result={
            "status": "SUCCESS",
            "outputs": [{"mime": "image/png", "data": output}],
        },
    )


def small_cells(count: int, version: str = "v1") -> tuple[Cell, ...]:
    # Ids of 12 characters, like the service's.
    return tuple(
        Cell(
            id=CellId(f"cell{i:08d}"), type=CellType.PYTHON, code=f"x{i} = {version!r}"
        )
        for i in range(count)
    )


def next_revision(notebook: Notebook, **changes: Any) -> Notebook:
    return dataclasses.replace(notebook, revision=notebook.revision + 1, **changes)


async def partition_items(
    client: DynamoDBClient, table: str, notebook_id: str
) -> list[dict[str, Any]]:
    """Every item of a notebook's partition."""
    items: list[dict[str, Any]] = []
    start: dict[str, Any] = {}
    while True:
        reply = await client.query(
            TableName=table,
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": f"NB#{notebook_id}"}},
            ConsistentRead=True,
            **start,
        )
        items += reply["Items"]
        if "LastEvaluatedKey" not in reply:
            return items
        start = {"ExclusiveStartKey": reply["LastEvaluatedKey"]}


def sort_keys(items: list[dict[str, Any]]) -> set[str]:
    return {item["SK"]["S"] for item in items}


# --- size


async def test_outputs_over_400_kb_save_and_load(replicas: Replicas) -> None:
    writer, reader = replicas
    notebook = make_notebook(
        "big",
        cells=(
            cell_with_output("plot", incompressible_text(1_500_000, seed=1)),
            *small_cells(2),
        ),
    )

    await writer.create(notebook)

    assert await reader.get(notebook.id) == notebook


async def test_a_large_output_is_split_into_items_under_the_limit(
    replicas: Replicas, client: DynamoDBClient, dynamodb_table: DynamoDBSettings
) -> None:
    writer, _ = replicas
    notebook = make_notebook(
        "big", cells=(cell_with_output("plot", incompressible_text(1_500_000, 2)),)
    )

    await writer.create(notebook)

    items = await partition_items(client, dynamodb_table.table, notebook.id)
    assert len(items) >= 1 + 3  # the meta item and at least 1.1 MB in parts
    assert max(item_size(item) for item in items) < MAX_ITEM_BYTES


async def test_a_put_changing_more_cells_than_a_transaction_holds_reads_back(
    replicas: Replicas,
) -> None:
    writer, reader = replicas
    original = make_notebook("wide", cells=small_cells(150))
    await writer.create(original)
    edited = next_revision(original, cells=small_cells(150, version="v2"))

    await writer.put(edited, expected_revision=1)

    assert await reader.get(original.id) == edited


async def test_a_losing_large_put_leaves_nothing_behind(
    replicas: Replicas, client: DynamoDBClient, dynamodb_table: DynamoDBSettings
) -> None:
    first, second = replicas
    original = make_notebook("wide", cells=small_cells(150))
    await first.create(original)
    await second.get(original.id)
    await first.put(next_revision(original, name="first"), expected_revision=1)
    before = sort_keys(await partition_items(client, dynamodb_table.table, "wide"))

    with pytest.raises(RevisionConflict):
        await second.put(
            next_revision(original, cells=small_cells(150, "lost")),
            expected_revision=1,
        )

    after = sort_keys(await partition_items(client, dynamodb_table.table, "wide"))
    assert after == before


async def test_too_many_cells_for_one_meta_item_is_too_large(
    replicas: Replicas,
) -> None:
    writer, _ = replicas
    # About 37 bytes of the meta item's 400 KB per cell: some 10,000 fit.
    notebook = make_notebook("long", cells=small_cells(11_000))

    with pytest.raises(NotebookTooLarge):
        await writer.create(notebook)

    with pytest.raises(NotebookNotFound):
        await writer.get(notebook.id)


# --- what a put writes


async def test_a_put_rewrites_only_the_cells_that_changed(
    replicas: Replicas, client: DynamoDBClient, dynamodb_table: DynamoDBSettings
) -> None:
    writer, _ = replicas
    original = make_notebook("nb1", cells=small_cells(3))
    await writer.create(original)
    before = sort_keys(await partition_items(client, dynamodb_table.table, "nb1"))
    cells = list(original.cells)
    cells[1] = dataclasses.replace(cells[1], code="x1 = 'edited'")

    await writer.put(next_revision(original, cells=tuple(cells)), 1)

    after = sort_keys(await partition_items(client, dynamodb_table.table, "nb1"))
    assert len(before - after) == 1
    assert len(after - before) == 1
    assert f"#{cells[1].id}#" in (after - before).pop()


async def test_delete_removes_every_item(
    replicas: Replicas, client: DynamoDBClient, dynamodb_table: DynamoDBSettings
) -> None:
    writer, _ = replicas
    notebook = make_notebook(
        "nb1", cells=(cell_with_output("plot", incompressible_text(800_000, 3)),)
    )
    await writer.create(notebook)
    await writer.put(next_revision(notebook, cells=small_cells(2)), 1)

    await writer.delete(notebook.id)

    assert await partition_items(client, dynamodb_table.table, "nb1") == []


# --- replicas


async def test_a_put_after_another_replicas_put_is_a_revision_conflict(
    replicas: Replicas,
) -> None:
    first, second = replicas
    original = make_notebook("nb1", cells=small_cells(2))
    await first.create(original)
    await second.get(original.id)
    await first.put(next_revision(original, name="first"), expected_revision=1)

    with pytest.raises(RevisionConflict) as conflict:
        await second.put(next_revision(original, name="second"), expected_revision=1)

    assert conflict.value.current == 2
    assert (await second.get(original.id)).name == "first"


async def test_a_replica_reads_what_another_replica_wrote(
    replicas: Replicas,
) -> None:
    first, second = replicas
    original = make_notebook("nb1", cells=small_cells(2))
    await first.create(original)
    await second.get(original.id)
    edited = next_revision(original, cells=small_cells(3, "v2"))

    await first.put(edited, expected_revision=1)

    assert await second.get(original.id) == edited


async def test_a_notebook_created_again_is_not_mistaken_for_the_old_one(
    replicas: Replicas,
) -> None:
    first, second = replicas
    await first.create(make_notebook("nb1", owner="ada", cells=small_cells(2)))
    await second.get(NotebookId("nb1"))
    await first.delete(NotebookId("nb1"))
    again = make_notebook("nb1", owner="bob", minute=5, cells=small_cells(1, "v2"))

    await first.create(again)

    assert await second.get(again.id) == again


# --- damage and outages


async def test_missing_cell_items_make_the_notebook_corrupt(
    replicas: Replicas, client: DynamoDBClient, dynamodb_table: DynamoDBSettings
) -> None:
    writer, reader = replicas
    await writer.create(make_notebook("nb1", cells=small_cells(2)))
    items = await partition_items(client, dynamodb_table.table, "nb1")
    victim = next(item for item in items if item["SK"]["S"] != "META")
    await client.delete_item(
        TableName=dynamodb_table.table, Key={"PK": victim["PK"], "SK": victim["SK"]}
    )

    with pytest.raises(NotebookCorrupt, match="missing"):
        await reader.get(NotebookId("nb1"))


async def test_a_missing_table_is_unavailable_and_named(dynamodb_endpoint: str) -> None:
    settings = DynamoDBSettings(table="no-such-table", endpoint_url=dynamodb_endpoint)
    async with open_dynamodb_store(settings) as store:
        with pytest.raises(StoreUnavailable, match="no-such-table"):
            await store.get(NotebookId("nb1"))


async def test_creating_the_table_again_changes_nothing(
    client: DynamoDBClient, dynamodb_table: DynamoDBSettings
) -> None:
    assert await create_table(client, dynamodb_table.table) is False


# --- two service processes on one table

SECRET = "two-replicas-test-internal-secret-0123456789"
CLIENTS_PER_REPLICA = 10
EDITS_PER_CLIENT = 3
ATTEMPTS_PER_EDIT = 100


async def _listening_port(process: asyncio.subprocess.Process) -> int:
    assert process.stdout is not None
    lines: list[bytes] = []
    while line := await process.stdout.readline():
        lines.append(line)
        found = re.search(rb"listening on port (\d+)", line)
        if found:
            return int(found.group(1))
    output = b"".join(lines).decode(errors="replace")
    raise AssertionError(f"the notebook service exited before listening:\n{output}")


async def _drain(process: asyncio.subprocess.Process) -> None:
    # Read what the service logs, so a full pipe never blocks it.
    assert process.stdout is not None
    while await process.stdout.readline():
        pass


@asynccontextmanager
async def running_replica(settings: DynamoDBSettings) -> AsyncIterator[int]:
    """A notebook service process on settings' table; yields its port."""
    assert settings.endpoint_url is not None
    env = {
        **os.environ,
        **FAKE_AWS_ENV,
        "NOTEBOOK_PORT": "0",
        "NOTEBOOK_STORE": "dynamodb",
        "NOTEBOOK_DYNAMODB_TABLE": settings.table,
        "NOTEBOOK_DYNAMODB_REGION": settings.region,
        "NOTEBOOK_DYNAMODB_ENDPOINT_URL": settings.endpoint_url,
        "REFLOW_INTERNAL_SECRET": SECRET,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.notebook",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    drain: asyncio.Task[None] | None = None
    try:
        port = await asyncio.wait_for(_listening_port(process), timeout=60)
        drain = asyncio.create_task(_drain(process))
        yield port
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=15)
            except TimeoutError:
                process.kill()
                await asyncio.wait_for(process.wait(), timeout=15)
        if drain is not None:
            await asyncio.wait_for(drain, timeout=15)


async def _add_cells(
    stub: Stub, metadata: Metadata, notebook_id: str, client: int
) -> tuple[list[str], int]:
    """Create cells one after another as a client would: on ABORTED (another
    replica wrote first) try again. Return the acknowledged cells' ids and
    the number of conflicts met."""
    acknowledged: list[str] = []
    conflicts = 0
    for edit in range(EDITS_PER_CLIENT):
        request = notebook_pb2.CreateCellRequest(
            notebook_id=notebook_id, code=f"c{client}_{edit} = {edit}"
        )
        for _ in range(ATTEMPTS_PER_EDIT):
            try:
                reply = await stub.CreateCell(request, metadata=metadata, timeout=30)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.ABORTED:
                    raise
                conflicts += 1
                # A little jitter, so two replicas' clients stop colliding.
                await asyncio.sleep(random.uniform(0, 0.01))
                continue
            acknowledged.append(reply.cell.id)
            break
        else:
            raise AssertionError(f"edit {edit} of client {client} never landed")
    return acknowledged, conflicts


async def test_two_service_replicas_on_one_table_lose_no_acknowledged_edit(
    dynamodb_table: DynamoDBSettings,
) -> None:
    metadata = (("authorization", f"Bearer {InternalTokens(SECRET).mint('alice')}"),)
    async with (
        running_replica(dynamodb_table) as first_port,
        running_replica(dynamodb_table) as second_port,
        grpc.aio.insecure_channel(f"127.0.0.1:{first_port}") as first,
        grpc.aio.insecure_channel(f"127.0.0.1:{second_port}") as second,
    ):
        stubs = [notebook_stub(first), notebook_stub(second)]
        created = await stubs[0].CreateNotebook(
            notebook_pb2.CreateNotebookRequest(name="shared"), metadata=metadata
        )
        notebook_id = created.notebook.id
        results = await asyncio.gather(
            *(
                _add_cells(stubs[n % 2], metadata, notebook_id, n)
                for n in range(2 * CLIENTS_PER_REPLICA)
            )
        )
    async with open_dynamodb_store(dynamodb_table) as store:
        stored = await store.get(NotebookId(notebook_id))

    acknowledged = [cell_id for ids, _ in results for cell_id in ids]
    assert len(acknowledged) == 2 * CLIENTS_PER_REPLICA * EDITS_PER_CLIENT
    assert sorted(cell.id for cell in stored.cells) == sorted(acknowledged)
    assert stored.revision == created.notebook.revision + len(acknowledged)
