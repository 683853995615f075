"""The notebook service's settings, read once from NOTEBOOK_* variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from services.notebook.files import DEFAULT_S3_BUCKET, FileLimits, S3Settings
from services.notebook.store import (
    DEFAULT_DYNAMODB_REGION,
    DEFAULT_DYNAMODB_TABLE,
    STORE_KINDS,
    DynamoDBSettings,
)
from services.shared.auth import InternalAuthSettings
from services.shared.config import ConfigError, EnvReader, listen_host
from services.shared.metrics import metrics_port

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path


AWS_SDK_VARIABLES: Final = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)
"""Read by the AWS SDK itself, never by Settings: the DynamoDB store's
credentials come from the SDK's own chain (these, a profile, or a role), so
they never pass through our settings or logs."""


@dataclass(frozen=True)
class Settings:
    """Everything the notebook service is configured by."""

    port: int
    store: str
    data_dir: Path
    dynamodb: DynamoDBSettings
    max_code_bytes: int
    # Notebooks' files (their working directories), beside the notebooks'
    # own directory unless NOTEBOOK_FILES_DIR says otherwise.
    files_dir: Path
    files: FileLimits
    # With the DynamoDB store, files are objects of this S3 bucket instead.
    s3: S3Settings
    log_level: str
    log_format: str
    auth: InternalAuthSettings
    # REFLOW_LISTEN_HOST: the address its servers listen on.
    listen_host: str = "127.0.0.1"
    # <SERVICE>_METRICS_PORT: where /metrics is served; None: not served.
    metrics_port: int | None = None
    # NOTEBOOK_REDIS_URL: the change stream replicas share (feed.py); None
    # keeps changes in this process, right for a single replica.
    redis_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        read = EnvReader(env, prefix="NOTEBOOK_")
        shared = EnvReader(env, prefix="")
        data_dir = read.path("DATA_DIR", "data/notebooks")
        return cls(
            port=read.integer("PORT", 50051, minimum=0),
            store=read.choice("STORE", STORE_KINDS, "local"),
            data_dir=data_dir,
            dynamodb=DynamoDBSettings(
                table=read.text("DYNAMODB_TABLE", DEFAULT_DYNAMODB_TABLE),
                # The SDK's own variable is the fallback, so a deployment that
                # sets AWS_REGION for everything need not repeat it here.
                region=read.text(
                    "DYNAMODB_REGION",
                    shared.text("AWS_REGION", DEFAULT_DYNAMODB_REGION),
                ),
                endpoint_url=read.optional_text("DYNAMODB_ENDPOINT_URL"),
            ),
            max_code_bytes=read.integer("MAX_CODE_BYTES", 1024 * 1024, minimum=1),
            files_dir=read.path("FILES_DIR", data_dir.parent / "notebook-files"),
            files=FileLimits(
                # Below the 16 MiB gRPC message cap, with room for the rest.
                max_file_bytes=read.integer(
                    "MAX_FILE_BYTES", 8 * 1024 * 1024, minimum=1
                ),
                max_user_bytes=read.integer(
                    "MAX_USER_FILE_BYTES", 256 * 1024 * 1024, minimum=1
                ),
            ),
            s3=S3Settings(
                bucket=read.text("S3_BUCKET", DEFAULT_S3_BUCKET),
                region=read.text(
                    "S3_REGION", shared.text("AWS_REGION", DEFAULT_DYNAMODB_REGION)
                ),
                endpoint_url=read.optional_text("S3_ENDPOINT_URL"),
            ),
            log_level=read.text("LOG_LEVEL", "INFO"),
            log_format=shared.choice("LOG_FORMAT", ("text", "json"), "text"),
            auth=InternalAuthSettings.from_env(env),
            listen_host=listen_host(env),
            metrics_port=metrics_port(read),
            redis_url=_redis_url(read.optional_text("REDIS_URL")),
        )


def _redis_url(url: str | None) -> str | None:
    """NOTEBOOK_REDIS_URL, refused without a password.

    Kernels share the host's network: a Redis anyone on the machine can
    open would let a cell read every notebook's changes and forge them.
    """
    if url is not None and not urlsplit(url).password:
        raise ConfigError(
            "NOTEBOOK_REDIS_URL has no password (redis://:PASSWORD@host:port/db): "
            "a cell could otherwise read and forge every notebook's changes"
        )
    return url
