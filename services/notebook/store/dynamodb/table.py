"""The notebook table's schema, and creating it (idempotently).

Keys: ``PK`` (hash) and ``SK`` (range), both strings; one GSI,
``owner-listing`` (``owner`` hash, ``listing`` range) projecting the summary
fields, for listings. On-demand capacity (PAY_PER_REQUEST): a notebook
service's load follows its users, and provisioned capacity would only move
the throttling decisions from DynamoDB into our configuration.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from botocore.exceptions import ClientError

from services.notebook.store.dynamodb.calls import error_code
from services.notebook.store.dynamodb.items import LISTING_INDEX, SUMMARY_ATTRIBUTES

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient

logger = logging.getLogger(__name__)

_KEY_ATTRIBUTES: Final = ("PK", "SK", "owner", "listing")
_WAIT_DELAY_S: Final = 1
_WAIT_ATTEMPTS: Final = 120


async def create_table(client: DynamoDBClient, table: str) -> bool:
    """Create the table unless it exists; wait until it is ACTIVE.

    Return True if it was created, False if it was already there.
    """
    try:
        await client.create_table(
            TableName=table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": name, "AttributeType": "S"}
                for name in _KEY_ATTRIBUTES
            ],
            KeySchema=[
                {"AttributeName": "PK", "KeyType": "HASH"},
                {"AttributeName": "SK", "KeyType": "RANGE"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": LISTING_INDEX,
                    "KeySchema": [
                        {"AttributeName": "owner", "KeyType": "HASH"},
                        {"AttributeName": "listing", "KeyType": "RANGE"},
                    ],
                    "Projection": {
                        "ProjectionType": "INCLUDE",
                        # Key attributes are projected anyway, and naming one
                        # here is an error.
                        "NonKeyAttributes": [
                            name
                            for name in SUMMARY_ATTRIBUTES
                            if name not in _KEY_ATTRIBUTES
                        ],
                    },
                }
            ],
        )
        created = True
    except ClientError as error:
        if error_code(error) != "ResourceInUseException":
            raise
        created = False
    waiter = client.get_waiter("table_exists")
    await waiter.wait(
        TableName=table,
        WaiterConfig={"Delay": _WAIT_DELAY_S, "MaxAttempts": _WAIT_ATTEMPTS},
    )
    return created
