"""python -m services.notebook.store.dynamodb create-table [--wait-s S]

Creates the notebook table the service would use, from the same settings
(NOTEBOOK_DYNAMODB_TABLE, NOTEBOOK_DYNAMODB_REGION or AWS_REGION,
NOTEBOOK_DYNAMODB_ENDPOINT_URL; credentials from the AWS SDK's chain), and
the S3 bucket that holds the notebooks' files with this store
(NOTEBOOK_S3_BUCKET, NOTEBOOK_S3_REGION, NOTEBOOK_S3_ENDPOINT_URL). It is
idempotent: a table or bucket that exists is left as it is. ``--wait-s`` keeps trying
while DynamoDB cannot be reached yet (a local DynamoDB container starting
beside it), up to that many seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from typing import TYPE_CHECKING

from services.notebook.config import Settings
from services.notebook.files.s3 import create_bucket, open_s3_client
from services.notebook.store.dynamodb import create_table, open_dynamodb_client
from services.notebook.store.dynamodb.calls import translated_errors
from services.shared import logs
from services.shared.errors import Unavailable

if TYPE_CHECKING:
    from collections.abc import Sequence

    from services.notebook.files import S3Settings
    from services.notebook.store import DynamoDBSettings

logger = logging.getLogger("services.notebook.store.dynamodb")

_RETRY_DELAY_S = 1.0


async def create(settings: DynamoDBSettings, s3: S3Settings, wait_s: float) -> None:
    """Create the table and the files bucket, retrying while DynamoDB or S3
    is unreachable for wait_s."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            async with open_dynamodb_client(settings) as client:
                with translated_errors(settings.table):
                    created = await create_table(client, settings.table)
            async with open_s3_client(s3) as s3_client:
                bucket_created = await create_bucket(s3_client, s3.bucket)
            break
        except Unavailable as error:
            if time.monotonic() >= deadline:
                raise
            logger.info("%s; retrying", error)
            await asyncio.sleep(_RETRY_DELAY_S)
    if created:
        logger.info("created DynamoDB table %r", settings.table)
    else:
        logger.info("DynamoDB table %r already exists", settings.table)
    if bucket_created:
        logger.info("created S3 bucket %r", s3.bucket)
    else:
        logger.info("S3 bucket %r already exists", s3.bucket)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; 0 on success."""
    parser = argparse.ArgumentParser(
        prog="python -m services.notebook.store.dynamodb",
        description="Manage the notebook service's DynamoDB table.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create_parser = commands.add_parser(
        "create-table", help="create the table (no-op if it exists)"
    )
    create_parser.add_argument(
        "--wait-s",
        type=float,
        default=0.0,
        help="keep retrying this long while DynamoDB is unreachable",
    )
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    logs.configure("notebook", settings.log_level, settings.log_format)
    try:
        asyncio.run(create(settings.dynamodb, settings.s3, args.wait_s))
    except Unavailable as error:
        logger.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
