"""Notebook files in S3 (through aioboto3): the files of the DynamoDB store.

One object per file, keyed `<owner digest>/<notebook id>/<path>` in one
bucket (the owner is a digest, as in `local.py`, since a token's subject
may hold any character; the path was checked by `paths.py`, so it is plain
`/`-separated names). A put is one PutObject, which S3 applies whole or not
at all, so a reader never sees half a file. Listing and the per-user usage
come from ListObjectsV2 under a prefix.

The per-user cap is checked under a per-user lock of this process: two
replicas writing for one user at the same moment can pass it by one file
each, which a cap on storage (not a security boundary) tolerates.

S3 errors other than a missing key become UNAVAILABLE ("the file storage is
unavailable"), never INTERNAL: the service is fine, its storage is not.
Credentials come from the AWS SDK's own chain, as for DynamoDB.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError

from services.notebook.errors import FileNotFound, FileQuotaExceeded
from services.notebook.files import FileLimits, S3Settings, StoredFile, check_size
from services.notebook.store.dynamodb import aws_session
from services.notebook.store.dynamodb.calls import client_config
from services.shared.errors import Unavailable

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from datetime import datetime

    from types_aiobotocore_s3.client import S3Client

    from services.notebook.models import NotebookId

logger = logging.getLogger(__name__)

# DeleteObjects takes at most this many keys a call.
_DELETE_BATCH: Final = 1000
_MISSING: Final = frozenset({"NoSuchKey", "404", "NotFound"})


class S3FileStore:
    """Keeps notebooks' files as objects of one bucket."""

    def __init__(self, client: S3Client, bucket: str, limits: FileLimits) -> None:
        self._client = client
        self._bucket = bucket
        self.limits = limits
        self._locks: dict[str, asyncio.Lock] = {}

    async def put(
        self, owner: str, notebook_id: NotebookId, path: str, content: bytes
    ) -> StoredFile:
        check_size(self.limits, path, content)
        key = self._key(owner, notebook_id, path)
        async with self._locks.setdefault(owner, asyncio.Lock()):
            sizes = {k: size for k, size, _ in await self._objects(_user(owner))}
            used = sum(sizes.values())
            if used - sizes.get(key, 0) + len(content) > self.limits.max_user_bytes:
                raise FileQuotaExceeded(used, len(content), self.limits.max_user_bytes)
            with _unavailable_on_error():
                await self._client.put_object(
                    Bucket=self._bucket, Key=key, Body=content
                )
                head = await self._client.head_object(Bucket=self._bucket, Key=key)
        return StoredFile(path, len(content), head["LastModified"])

    async def listing(self, owner: str, notebook_id: NotebookId) -> list[StoredFile]:
        prefix = self._key(owner, notebook_id, "")
        found = [
            StoredFile(key.removeprefix(prefix), size, modified)
            for key, size, modified in await self._objects(prefix)
        ]
        return sorted(found, key=lambda f: f.path)

    async def get(
        self, owner: str, notebook_id: NotebookId, path: str
    ) -> tuple[StoredFile, bytes]:
        key = self._key(owner, notebook_id, path)
        try:
            with _unavailable_on_error():
                reply = await self._client.get_object(Bucket=self._bucket, Key=key)
                async with reply["Body"] as body:
                    content = await body.read()
        except _Missing:
            raise FileNotFound(notebook_id, path) from None
        return StoredFile(path, len(content), reply["LastModified"]), content

    async def delete(self, owner: str, notebook_id: NotebookId, path: str) -> None:
        key = self._key(owner, notebook_id, path)
        try:
            with _unavailable_on_error():
                # DeleteObject succeeds for a missing key: ask first.
                await self._client.head_object(Bucket=self._bucket, Key=key)
                await self._client.delete_object(Bucket=self._bucket, Key=key)
        except _Missing:
            raise FileNotFound(notebook_id, path) from None

    async def delete_all(self, owner: str, notebook_id: NotebookId) -> None:
        keys = [
            key for key, _, _ in await self._objects(self._key(owner, notebook_id, ""))
        ]
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            with _unavailable_on_error():
                await self._client.delete_objects(
                    Bucket=self._bucket,
                    Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
                )

    async def used_bytes(self, owner: str) -> int:
        return sum(size for _, size, _ in await self._objects(_user(owner)))

    async def _objects(self, prefix: str) -> list[tuple[str, int, datetime]]:
        found = []
        with _unavailable_on_error():
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=prefix
            )
            async for page in pages:
                for item in page.get("Contents", []):
                    found.append((item["Key"], item["Size"], item["LastModified"]))
        return found

    def _key(self, owner: str, notebook_id: NotebookId, path: str) -> str:
        return f"{_user(owner)}{notebook_id}/{path}"


def _user(owner: str) -> str:
    return hashlib.sha256(owner.encode()).hexdigest()[:32] + "/"


class _Missing(Exception):
    """S3 answered that the key does not exist."""


@contextmanager
def _unavailable_on_error() -> Iterator[None]:
    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in _MISSING:
            raise _Missing from None
        logger.warning("S3 refused a request: %s", code or error)
        raise Unavailable("the file storage is unavailable, try again") from None
    except BotoCoreError as error:
        logger.warning("S3 could not be reached: %s", type(error).__name__)
        raise Unavailable("the file storage is unavailable, try again") from None


@asynccontextmanager
async def open_s3_client(settings: S3Settings) -> AsyncIterator[S3Client]:
    """An S3 client for settings' region and endpoint, for the block."""
    async with aws_session().client(
        "s3",
        region_name=settings.region,
        endpoint_url=settings.endpoint_url,
        config=client_config(),
    ) as client:
        yield client


async def create_bucket(client: S3Client, bucket: str) -> bool:
    """Create the bucket unless it exists; True if it was created
    (Unavailable while S3 cannot be reached)."""
    try:
        with _unavailable_on_error():
            await client.head_bucket(Bucket=bucket)
        return False
    except _Missing:
        pass
    with _unavailable_on_error():
        await client.create_bucket(Bucket=bucket)
    return True


@asynccontextmanager
async def open_s3_file_store(
    settings: S3Settings, limits: FileLimits
) -> AsyncIterator[S3FileStore]:
    """An S3FileStore on settings' bucket, for the block."""
    async with open_s3_client(settings) as client:
        logger.info("notebook files: S3 bucket %s", settings.bucket)
        yield S3FileStore(client, settings.bucket, limits)
