"""Fixtures shared by every test folder."""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from services.execution.kernel.launcher import KernelLauncher

# grpc's C core prints INFO lines ("Got goaway") to stderr when test servers
# stop; they are noise, not failures.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

if importlib.util.find_spec("reflow.notebook.v1.notebook_pb2") is None:
    raise pytest.UsageError("generated protobuf code is missing: run `make protos`")


@pytest.fixture(scope="session")
async def launcher() -> AsyncIterator[KernelLauncher]:
    """One warm zygote for the whole test run: starting one takes seconds.

    Here rather than in tests/execution so that every folder that runs real
    kernels (execution, assistant) shares the one zygote.
    """
    # Imported here: the check above must run before generated code is needed.
    from services.execution.kernel.launcher import KernelLauncher
    from services.execution.kernel.sandbox import SandboxConfig

    # Confined as in production: every test that runs a cell also shows the
    # sandbox leaves pandas, matplotlib, SQL and subprocesses working.
    launcher = KernelLauncher(use_zygote=True, sandbox=SandboxConfig())
    await launcher.start()
    yield launcher
    await launcher.close()
