"""DynamoDB calls with the retries, limits and error meanings the store needs.

botocore retries throttling and transient failures of every call by itself
("standard" retry mode, client_config()); its connect and read timeouts bound
each attempt. On top of that, this module:

* retries a TransactWriteItems that DynamoDB cancelled only because another
  transaction was busy with one of its items (TransactionConflict) or it was
  throttled: a cancellation is a definite "nothing was applied", so trying
  again (with a new ClientRequestToken) is safe;
* retries the unprocessed part of BatchWriteItem / BatchGetItem, with
  backoff, for as long as each round makes progress;
* turns a failed ConditionExpression into ConditionFailed, which the store
  turns into a domain error after looking at what is there;
* turns "DynamoDB is not answering" (no connection, throttled after every
  retry, no table, no credentials) into StoreUnavailable (UNAVAILABLE), with
  the error's class or code as the message: never a URL, never credentials.
"""

from __future__ import annotations

import asyncio
import logging
import random
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from services.notebook.errors import StoreUnavailable
from services.notebook.store.dynamodb.items import Item, Key, item_size, key_item

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from types_aiobotocore_dynamodb.client import DynamoDBClient

logger = logging.getLogger(__name__)

MAX_TRANSACTION_ITEMS: Final = 100
MAX_REQUEST_BYTES: Final = 600_000
"""Item bytes per write request (a transaction or a batch). Far below
DynamoDB's limits (4 MB per transaction, 16 MB per batch) on purpose: binary
travels base64-encoded, so this keeps each request body under aiohttp's
1 MiB "large body" threshold, and encoding one request never holds the event
loop for long. An edit with at most one large part still fits one request."""

_BATCH_WRITE_ITEMS: Final = 25
_BATCH_GET_KEYS: Final = 100
_PARALLEL_BATCHES: Final = 4
_ATTEMPTS: Final = 8
_BACKOFF_BASE_S: Final = 0.02
_BACKOFF_CAP_S: Final = 1.0

# Cancellation reasons that say "not now" rather than "never".
_RETRY_REASONS: Final = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
)
# Error codes left after botocore's own retries that still mean "try later".
_UNAVAILABLE_CODES: Final = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "AccessDeniedException",
    }
)


class ConditionFailed(Exception):
    """A write's ConditionExpression did not hold; nothing was written."""


def client_config() -> AioConfig:
    """The client settings: bounded attempts and timeouts, SDK retries."""
    return AioConfig(
        retries={"mode": "standard", "max_attempts": 4},
        connect_timeout=5,
        read_timeout=30,
    )


def error_code(error: ClientError) -> str:
    """The error code DynamoDB answered with."""
    return error.response.get("Error", {}).get("Code", "")


@contextmanager
def translated_errors(table: str) -> Iterator[None]:
    """Raise StoreUnavailable for failures that mean "DynamoDB is not there"."""
    try:
        yield
    except ClientError as error:
        code = error_code(error)
        if code == "ResourceNotFoundException":
            raise StoreUnavailable(
                f"DynamoDB table {table!r} does not exist (create it with "
                "`python -m services.notebook.store.dynamodb create-table`)"
            ) from error
        if code in _UNAVAILABLE_CODES:
            raise StoreUnavailable(f"DynamoDB answered {code}") from error
        raise
    except BotoCoreError as error:
        # Connection refused, timeouts, no credentials: the class says which
        # (its text may hold the endpoint URL, which stays in the logs).
        logger.warning("DynamoDB call failed: %s", type(error).__name__)
        raise StoreUnavailable(
            f"DynamoDB could not be reached ({type(error).__name__})"
        ) from error


async def backoff(attempt: int) -> None:
    """Sleep before retry number attempt (0-based): full jitter, capped."""
    ceiling = min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2**attempt)
    await asyncio.sleep(random.uniform(0, ceiling))


async def transact_write(
    client: DynamoDBClient, actions: Sequence[dict[str, Any]], token: str
) -> None:
    """Apply actions in one transaction; ConditionFailed if a condition did
    not hold. token (unique per logical write) makes botocore's retries of one
    attempt idempotent: a retry after a lost response is not applied twice."""
    for attempt in range(_ATTEMPTS):
        try:
            await client.transact_write_items(
                TransactItems=list(actions),  # type: ignore[arg-type]
                ClientRequestToken=f"{token}-{attempt}",
            )
            return
        except ClientError as error:
            if error_code(error) != "TransactionCanceledException":
                raise
            reasons = {
                reason.get("Code", "None")
                for reason in error.response.get("CancellationReasons", [])
            }
            if "ConditionalCheckFailed" in reasons:
                raise ConditionFailed() from None
            if not reasons & _RETRY_REASONS:
                raise
            logger.debug("transaction cancelled (%s); retrying", sorted(reasons))
        await backoff(attempt)
    raise StoreUnavailable("DynamoDB transactions kept conflicting with others")


async def put_if(
    client: DynamoDBClient,
    table: str,
    item: Item,
    condition: str,
    names: dict[str, str] | None = None,
    values: Item | None = None,
) -> None:
    """Put item if condition holds; ConditionFailed otherwise."""
    # DynamoDB refuses empty name or value maps, so they are left out instead.
    extra: dict[str, Any] = {}
    if names:
        extra["ExpressionAttributeNames"] = names
    if values:
        extra["ExpressionAttributeValues"] = values
    try:
        await client.put_item(
            TableName=table, Item=item, ConditionExpression=condition, **extra
        )
    except ClientError as error:
        if error_code(error) == "ConditionalCheckFailedException":
            raise ConditionFailed() from None
        raise


async def delete_existing(client: DynamoDBClient, table: str, key: Key) -> Item:
    """Delete the item at key and return it; ConditionFailed if there is none."""
    try:
        reply = await client.delete_item(
            TableName=table,
            Key=key_item(key),
            ConditionExpression="attribute_exists(PK)",
            ReturnValues="ALL_OLD",
        )
    except ClientError as error:
        if error_code(error) == "ConditionalCheckFailedException":
            raise ConditionFailed() from None
        raise
    return dict(reply.get("Attributes", {}))


async def get_item(client: DynamoDBClient, table: str, key: Key) -> Item | None:
    """The item at key, read strongly consistently, or None."""
    reply = await client.get_item(
        TableName=table, Key=key_item(key), ConsistentRead=True
    )
    item = reply.get("Item")
    return None if item is None else dict(item)


async def batch_get(
    client: DynamoDBClient, table: str, keys: Sequence[Key]
) -> dict[Key, Item]:
    """The items at keys (strongly consistent); missing ones are left out."""
    found: dict[Key, Item] = {}
    unique = list(dict.fromkeys(keys))
    chunks = [
        unique[at : at + _BATCH_GET_KEYS]
        for at in range(0, len(unique), _BATCH_GET_KEYS)
    ]
    limit = asyncio.Semaphore(_PARALLEL_BATCHES)

    async def fetch(chunk: list[Key]) -> None:
        async with limit:
            found.update(await _batch_get_chunk(client, table, chunk))

    await asyncio.gather(*(fetch(chunk) for chunk in chunks))
    return found


async def _batch_get_chunk(
    client: DynamoDBClient, table: str, keys: list[Key]
) -> dict[Key, Item]:
    found: dict[Key, Item] = {}
    request: dict[str, Any] = {
        table: {"Keys": [key_item(key) for key in keys], "ConsistentRead": True}
    }
    stalled = 0
    while request:
        reply = await client.batch_get_item(RequestItems=request)
        items = reply.get("Responses", {}).get(table, [])
        for item in items:
            found[(item["PK"]["S"], item["SK"]["S"])] = dict(item)
        request = dict(reply.get("UnprocessedKeys") or {})
        # Large items come back a few at a time (16 MB per reply): that is
        # progress, not throttling, and does not use up attempts.
        stalled = 0 if items else stalled + 1
        if request:
            if stalled >= _ATTEMPTS:
                raise StoreUnavailable("DynamoDB kept leaving reads unprocessed")
            await backoff(stalled)
    return found


async def batch_write(
    client: DynamoDBClient,
    table: str,
    puts: Sequence[Item] = (),
    deletes: Sequence[Key] = (),
) -> None:
    """Put and delete items, at most 25 (and MAX_REQUEST_BYTES) to a
    request, a few requests at a time, retrying unprocessed ones."""
    requests = [({"PutRequest": {"Item": item}}, item_size(item)) for item in puts]
    requests += [({"DeleteRequest": {"Key": key_item(key)}}, 0) for key in deletes]
    chunks: list[list[dict[str, Any]]] = []
    size = 0
    for request, request_size in requests:
        if (
            not chunks
            or len(chunks[-1]) == _BATCH_WRITE_ITEMS
            or size + request_size > MAX_REQUEST_BYTES
        ):
            chunks.append([])
            size = 0
        chunks[-1].append(request)
        size += request_size
    limit = asyncio.Semaphore(_PARALLEL_BATCHES)

    async def write(chunk: list[dict[str, Any]]) -> None:
        async with limit:
            await _batch_write_chunk(client, table, chunk)

    await asyncio.gather(*(write(chunk) for chunk in chunks))


async def _batch_write_chunk(
    client: DynamoDBClient, table: str, chunk: list[dict[str, Any]]
) -> None:
    # Any: what comes back unprocessed is the output TypedDict of what went in.
    pending: list[Any] = chunk
    for attempt in range(_ATTEMPTS):
        reply = await client.batch_write_item(RequestItems={table: pending})
        pending = list((reply.get("UnprocessedItems") or {}).get(table, []))
        if not pending:
            return
        await backoff(attempt)
    raise StoreUnavailable("DynamoDB kept leaving writes unprocessed")


async def query_keys(
    client: DynamoDBClient, table: str, pk: str, sk_prefix: str
) -> list[Key]:
    """The keys of every item in partition pk whose SK starts with sk_prefix."""
    keys: list[Key] = []
    start: dict[str, Any] | None = None
    while True:
        extra: dict[str, Any] = {"ExclusiveStartKey": start} if start else {}
        reply = await client.query(
            TableName=table,
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues={":pk": {"S": pk}, ":prefix": {"S": sk_prefix}},
            ProjectionExpression="PK, SK",
            ConsistentRead=True,
            **extra,
        )
        keys += [(item["PK"]["S"], item["SK"]["S"]) for item in reply.get("Items", [])]
        start = reply.get("LastEvaluatedKey")
        if not start:
            return keys
