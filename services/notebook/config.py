"""The notebook service's settings, read once from NOTEBOOK_* variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.shared.auth import InternalAuthSettings
from services.shared.config import EnvReader

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Everything the notebook service is configured by."""

    port: int
    store: str
    data_dir: Path
    max_code_bytes: int
    log_level: str
    log_format: str
    auth: InternalAuthSettings

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        read = EnvReader(env, prefix="NOTEBOOK_")
        shared = EnvReader(env, prefix="")
        return cls(
            port=read.integer("PORT", 50051, minimum=0),
            store=read.choice("STORE", ("local", "memory"), "local"),
            data_dir=read.path("DATA_DIR", "data/notebooks"),
            max_code_bytes=read.integer("MAX_CODE_BYTES", 1024 * 1024, minimum=1),
            log_level=read.text("LOG_LEVEL", "INFO"),
            log_format=shared.choice("LOG_FORMAT", ("text", "json"), "text"),
            auth=InternalAuthSettings.from_env(env),
        )
