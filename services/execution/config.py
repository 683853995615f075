"""The execution service's settings, read once from EXECUTION_* variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.execution.kernel.sandbox import SandboxConfig
from services.shared.auth import InternalAuthSettings
from services.shared.config import ConfigError, EnvReader, listen_host
from services.shared.metrics import metrics_port

if TYPE_CHECKING:
    from collections.abc import Mapping

MIB = 1024 * 1024


@dataclass(frozen=True)
class KernelSettings:
    """Limits and timings that apply to every kernel."""

    # 0 means no limit.
    memory_limit_bytes: int = 2048 * MIB
    # 0 means no limit.
    cell_timeout_s: float = 0.0
    output_limit_bytes: int = 2 * MIB
    idle_timeout_s: float = 900.0
    interrupt_grace_s: float = 3.0
    shutdown_timeout_s: float = 5.0
    max_kernels_per_user: int = 10
    max_kernels: int = 50
    use_zygote: bool = True
    # How kernels are confined; None: they are not (EXECUTION_SANDBOX=off).
    sandbox: SandboxConfig | None = SandboxConfig()


@dataclass(frozen=True)
class Settings:
    """Everything the execution service is configured by."""

    port: int
    notebook_service_addr: str
    kernels: KernelSettings
    log_level: str
    log_format: str
    auth: InternalAuthSettings
    # REFLOW_LISTEN_HOST: the address its servers listen on.
    listen_host: str = "127.0.0.1"
    # <SERVICE>_METRICS_PORT: where /metrics is served; None: not served.
    metrics_port: int | None = None
    # EXECUTION_REPLICA_ID: how GetKernel names this replica; empty means its
    # host name and port, which tell replicas apart on one machine and in a pod.
    replica_id: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        read = EnvReader(env, prefix="EXECUTION_")
        shared = EnvReader(env, prefix="")
        sandbox = None
        if read.boolean("SANDBOX", True):
            uid_first, uid_count = _uid_range(read.text("KERNEL_UIDS", "200000-265535"))
            sandbox = SandboxConfig(
                uid_first=uid_first,
                uid_count=uid_count,
                max_processes=read.integer("MAX_PROCESSES", 256, minimum=0),
                max_open_files=read.integer("MAX_OPEN_FILES", 1024, minimum=0),
                scratch_bytes=read.integer("SCRATCH_LIMIT_MB", 1024, minimum=1) * MIB,
            )
        use_zygote = read.boolean("USE_ZYGOTE", True)
        if sandbox is not None and not use_zygote:
            raise ConfigError(
                "EXECUTION_USE_ZYGOTE=false starts kernels that are not confined; "
                "it needs EXECUTION_SANDBOX=off"
            )
        kernels = KernelSettings(
            memory_limit_bytes=read.integer("MEMORY_LIMIT_MB", 2048, minimum=0) * MIB,
            cell_timeout_s=read.number("CELL_TIMEOUT_S", 0.0),
            output_limit_bytes=read.integer("OUTPUT_LIMIT_KB", 2048, minimum=1) * 1024,
            idle_timeout_s=read.number("IDLE_TIMEOUT_S", 900.0),
            interrupt_grace_s=read.number("INTERRUPT_GRACE_S", 3.0),
            shutdown_timeout_s=read.number("SHUTDOWN_TIMEOUT_S", 5.0),
            max_kernels_per_user=read.integer("MAX_KERNELS_PER_USER", 10, minimum=1),
            max_kernels=read.integer("MAX_KERNELS", 50, minimum=1),
            use_zygote=use_zygote,
            sandbox=sandbox,
        )
        return cls(
            port=read.integer("PORT", 50052, minimum=0),
            notebook_service_addr=shared.text(
                "NOTEBOOK_SERVICE_ADDR", "localhost:50051"
            ),
            kernels=kernels,
            log_level=read.text("LOG_LEVEL", "INFO"),
            log_format=shared.choice("LOG_FORMAT", ("text", "json"), "text"),
            auth=InternalAuthSettings.from_env(env),
            listen_host=listen_host(env),
            metrics_port=metrics_port(read),
            replica_id=read.text("REPLICA_ID", ""),
        )


def _uid_range(text: str) -> tuple[int, int]:
    """``EXECUTION_KERNEL_UIDS`` ("200000-265535") as (first, count)."""
    first, _, last = text.partition("-")
    try:
        low, high = int(first), int(last)
    except ValueError:
        raise ConfigError(
            "EXECUTION_KERNEL_UIDS must be FIRST-LAST (e.g. 200000-265535), "
            f"not {text!r}"
        ) from None
    if not 1000 <= low <= high < 2**32 - 1:
        raise ConfigError(
            f"EXECUTION_KERNEL_UIDS must be a range of unused uids from 1000 up, "
            f"not {text!r}"
        )
    return low, high - low + 1
