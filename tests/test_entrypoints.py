"""Each service, started as an operator would, refuses what would make it unsafe.

No built-in secret: without ``REFLOW_INTERNAL_SECRET`` every service exits
at once with a message naming it. No unconfined kernels by accident: an
execution service that cannot confine kernels exits and says how to choose
to run them unconfined.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

ROOT: Final = Path(__file__).resolve().parents[1]
SERVICES: Final = ("notebook", "execution", "assistant", "gateway")


def _env(**extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("REFLOW_", "NOTEBOOK_", "EXECUTION_", "GATEWAY_"))
    }
    env.update(extra)
    return env


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_without_the_internal_secret_refuses_to_start(
    service: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", f"services.{service}"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert f"{service}: REFLOW_INTERNAL_SECRET is not set" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="maps root into a user namespace")
def test_an_execution_service_that_cannot_confine_kernels_refuses_to_start(
    tmp_path: Path,
) -> None:
    # "root" in a user namespace of its own: it may create namespaces but
    # has no other uid to give kernels, like a container without CAP_SETUID.
    unshare = shutil.which("unshare")
    assert unshare is not None
    result = subprocess.run(
        [
            unshare,
            "--user",
            "--map-root-user",
            sys.executable,
            "-m",
            "services.execution",
        ],
        cwd=ROOT,
        env=_env(
            REFLOW_INTERNAL_SECRET="entrypoint-tests-internal-secret-0123456789",
            EXECUTION_PORT="0",
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 2, result.stderr
    assert "kernels cannot be confined on this machine" in result.stderr
    assert "EXECUTION_SANDBOX=off" in result.stderr
