"""The execution service's settings: the kernel sandbox and its limits."""

from __future__ import annotations

import pytest

from services.execution.config import Settings
from services.execution.kernel.environment import kernel_environment
from services.execution.kernel.sandbox import SandboxConfig
from services.shared.config import ConfigError

SECRET = {"REFLOW_INTERNAL_SECRET": "execution-config-tests-secret-0123456789"}
MIB = 1024 * 1024


def test_kernels_are_confined_and_bounded_by_default() -> None:
    kernels = Settings.from_env(SECRET).kernels

    assert kernels.sandbox == SandboxConfig()
    assert kernels.memory_limit_bytes == 2048 * MIB
    assert kernels.sandbox.max_processes == 256
    assert kernels.sandbox.max_open_files == 1024
    assert kernels.sandbox.scratch_bytes == 1024 * MIB


def test_limits_and_uids_are_read_from_their_variables() -> None:
    kernels = Settings.from_env(
        {
            **SECRET,
            "EXECUTION_KERNEL_UIDS": "300000-300099",
            "EXECUTION_MAX_PROCESSES": "64",
            "EXECUTION_MAX_OPEN_FILES": "256",
            "EXECUTION_SCRATCH_LIMIT_MB": "32",
            "EXECUTION_MEMORY_LIMIT_MB": "512",
        }
    ).kernels

    assert kernels.sandbox == SandboxConfig(
        uid_first=300000,
        uid_count=100,
        max_processes=64,
        max_open_files=256,
        scratch_bytes=32 * MIB,
    )
    assert kernels.memory_limit_bytes == 512 * MIB


def test_the_sandbox_can_be_turned_off_explicitly() -> None:
    kernels = Settings.from_env({**SECRET, "EXECUTION_SANDBOX": "off"}).kernels

    assert kernels.sandbox is None


def test_subprocess_kernels_need_the_sandbox_off() -> None:
    with pytest.raises(ConfigError, match="EXECUTION_SANDBOX=off"):
        Settings.from_env({**SECRET, "EXECUTION_USE_ZYGOTE": "false"})

    settings = Settings.from_env(
        {**SECRET, "EXECUTION_USE_ZYGOTE": "false", "EXECUTION_SANDBOX": "off"}
    )
    assert not settings.kernels.use_zygote


@pytest.mark.parametrize("uids", ["abc", "5-1", "0-100", "200000"])
def test_a_bad_uid_range_is_refused_naming_the_variable(uids: str) -> None:
    with pytest.raises(ConfigError, match="EXECUTION_KERNEL_UIDS"):
        Settings.from_env({**SECRET, "EXECUTION_KERNEL_UIDS": uids})


def test_the_config_round_trips_through_the_zygotes_command_line() -> None:
    config = SandboxConfig(uid_first=1000, uid_count=5, readonly_paths=("/opt/x",))

    assert SandboxConfig.from_json(config.to_json()) == config


def test_kernels_get_only_the_allowed_environment() -> None:
    service = {
        "PATH": "/usr/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "OPENBLAS_CORETYPE": "Haswell",
        "REFLOW_INTERNAL_SECRET": "s" * 40,
        "AWS_SECRET_ACCESS_KEY": "aws",
        "OPENAI_API_KEY": "sk-test",
        "NOTEBOOK_DYNAMODB_ENDPOINT_URL": "http://127.0.0.1:1",
        "DATABASE_URL": "postgresql://u:p@db/x",
        "MPLBACKEND": "TkAgg",
    }

    assert kernel_environment(service) == {
        "PATH": "/usr/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "OPENBLAS_CORETYPE": "Haswell",
        "MPLBACKEND": "Agg",
    }
