"""The assistant's settings, read once from ASSISTANT_* and OPENAI_* variables.

The model is any server that speaks OpenAI's Chat Completions:
``OPENAI_API_KEY`` and ``OPENAI_BASE_URL`` are the names the ``openai``
package itself reads, and ``ASSISTANT_MODEL`` names the model. With neither
the key nor the base URL the service still starts (conversations can be
listed and read), but Chat answers FAILED_PRECONDITION naming them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from services.shared.auth import InternalAuthSettings
from services.shared.config import EnvReader, listen_host
from services.shared.metrics import metrics_port

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

DEFAULT_MODEL: Final = "gpt-4o-mini"

PLACEHOLDER_API_KEY: Final = "not-needed"
"""Sent to a base URL that needs no key (a local server): the client wants one."""


@dataclass(frozen=True)
class ModelSettings:
    """Which model to talk to, and how patiently."""

    # Never printed: repr=False keeps it out of reprs and tracebacks.
    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    model: str = DEFAULT_MODEL
    read_timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    max_retries: int = 2

    @property
    def configured(self) -> bool:
        """True when there is somewhere to send requests."""
        return self.api_key is not None or self.base_url is not None


@dataclass(frozen=True)
class TurnLimits:
    """Bounds on one turn of a conversation (see conversation.py)."""

    max_tool_rounds: int = 8
    deadline_s: float = 300.0
    max_history_messages: int = 200
    max_message_bytes: int = 32 * 1024


@dataclass(frozen=True)
class ToolLimits:
    """How much of a notebook a tool result may carry to the model."""

    max_result_chars: int = 24_000
    max_code_chars: int = 8_000
    max_output_chars: int = 2_000


@dataclass(frozen=True)
class Settings:
    """Everything the assistant service is configured by."""

    port: int
    notebook_service_addr: str
    execution_service_addr: str
    store: str
    data_dir: Path
    audit_log: Path
    model: ModelSettings
    turns: TurnLimits
    tools: ToolLimits
    log_level: str
    log_format: str
    auth: InternalAuthSettings
    # REFLOW_LISTEN_HOST: the address its servers listen on.
    listen_host: str = "127.0.0.1"
    # <SERVICE>_METRICS_PORT: where /metrics is served; None: not served.
    metrics_port: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        read = EnvReader(env, prefix="ASSISTANT_")
        shared = EnvReader(env, prefix="")
        data_dir = read.path("DATA_DIR", "data/assistant")
        model = ModelSettings(
            api_key=shared.optional_text("OPENAI_API_KEY"),
            base_url=shared.optional_text("OPENAI_BASE_URL"),
            model=read.text("MODEL", DEFAULT_MODEL),
            read_timeout_s=read.number("READ_TIMEOUT_S", 60.0),
            connect_timeout_s=read.number("CONNECT_TIMEOUT_S", 10.0),
            max_retries=read.integer("MAX_RETRIES", 2, minimum=0),
        )
        turns = TurnLimits(
            max_tool_rounds=read.integer("MAX_TOOL_ROUNDS", 8, minimum=1),
            deadline_s=read.number("TURN_DEADLINE_S", 300.0),
            max_history_messages=read.integer("MAX_HISTORY_MESSAGES", 200, minimum=1),
        )
        tools = ToolLimits(
            max_result_chars=read.integer(
                "TOOL_RESULT_MAX_CHARS", 24_000, minimum=1000
            ),
        )
        return cls(
            port=read.integer("PORT", 50053, minimum=0),
            notebook_service_addr=shared.text(
                "NOTEBOOK_SERVICE_ADDR", "localhost:50051"
            ),
            execution_service_addr=shared.text(
                "EXECUTION_SERVICE_ADDR", "localhost:50052"
            ),
            store=read.choice("STORE", ("local", "memory"), "local"),
            data_dir=data_dir,
            audit_log=read.path("AUDIT_LOG", data_dir / "audit.log"),
            model=model,
            turns=turns,
            tools=tools,
            log_level=read.text("LOG_LEVEL", "INFO"),
            log_format=shared.choice("LOG_FORMAT", ("text", "json"), "text"),
            auth=InternalAuthSettings.from_env(env),
            listen_host=listen_host(env),
            metrics_port=metrics_port(read),
        )
