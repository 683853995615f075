"""Reflow's services as separate processes a test can SIGKILL and start again.

``python -m services.stack`` stops everything when one child dies, which is
right for a person at a terminal and wrong for a fault test: here the
notebook, execution and gateway services each run on their own, on fixed
free ports, so a killed one can be started again on the same port while
its clients keep their channels.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import grpc

from services.shared.healthcheck import serving_status
from tests.stack.stack_process import ROOT, free_ports

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

READY_TIMEOUT_S: Final = 60.0
SECRET: Final = "fault-tests-internal-secret-0123456789abcdef"


@dataclass
class ServiceProcess:
    """One service: how to start it, and the process while it runs."""

    name: str
    port: int
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    pids: list[int] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the service and wait until its health check says SERVING."""
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pids.append(self.process.pid)
        wait_until_serving(self.address, self.process)

    def kill(self) -> None:
        """SIGKILL the service (its process group: it may have children)."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def wait_until_serving(address: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    with grpc.insecure_channel(address) as channel:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"{address} exited with {process.returncode}")
            try:
                status = serving_status(channel, timeout_s=1)
            except grpc.RpcError:
                time.sleep(0.1)  # not listening yet: nothing to await but time
                continue
            if status == "SERVING":
                return
    raise AssertionError(f"{address} did not serve within {READY_TIMEOUT_S} s")


@dataclass
class Services:
    """The notebook, execution and gateway services of one test module."""

    notebook: ServiceProcess
    execution: ServiceProcess
    gateway: ServiceProcess
    data_dir: Path

    def token(self, user: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "services.gateway.devtoken", user],
            env=self.gateway.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return result.stdout.strip()


@contextlib.contextmanager
def running_services(data_dir: Path) -> Iterator[Services]:
    """Start the three services on free ports; stop (or kill) them after."""
    notebook_port, execution_port, grpc_port, http_port = free_ports(4)
    env = dict(os.environ)
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "REFLOW_INTERNAL_SECRET": SECRET,
            "NOTEBOOK_PORT": str(notebook_port),
            "NOTEBOOK_STORE": "local",
            "NOTEBOOK_DATA_DIR": str(data_dir / "notebooks"),
            "EXECUTION_PORT": str(execution_port),
            "NOTEBOOK_SERVICE_ADDR": f"127.0.0.1:{notebook_port}",
            "EXECUTION_SERVICE_ADDR": f"127.0.0.1:{execution_port}",
            "GATEWAY_GRPC_PORT": str(grpc_port),
            "GATEWAY_HTTP_PORT": str(http_port),
            "GATEWAY_DATA_DIR": str(data_dir / "gateway"),
        }
    )
    for name in ("ASSISTANT_SERVICE_ADDR", "GATEWAY_JWKS_URL", "CLERK_FRONTEND_API"):
        env.pop(name, None)
    services = Services(
        ServiceProcess("notebook", notebook_port, env, data_dir / "notebook.log"),
        ServiceProcess("execution", execution_port, env, data_dir / "execution.log"),
        ServiceProcess("gateway", grpc_port, env, data_dir / "gateway.log"),
        data_dir,
    )
    members = (services.notebook, services.execution, services.gateway)
    try:
        for member in members:
            member.start()
        yield services
    finally:
        for member in reversed(members):
            member.stop()
