"""The stack runner's life cycle, as a person at a terminal sees it.

`make run` itself (as a new user types it), then the runner directly for
what a terminal cannot show well: its exit codes on SIGTERM, on a crashed
service, on a port already taken. Every test checks that no process the
stack started, kernels included, outlives it.
"""

from __future__ import annotations

import os
import signal
import socket
from typing import TYPE_CHECKING, Final

import pytest

from tests.stack.grpcurl import grpcurl
from tests.stack.stack_process import (
    READY_LINE,
    launch,
    stack_env,
    wait_until_gone,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.stack.stack_process import RunningStack

START_TIMEOUT_S: Final = 90.0
# `make run` may first bring the venv and node_modules up to date.
MAKE_START_TIMEOUT_S: Final = 110.0
STOP_TIMEOUT_S: Final = 60.0
NOTEBOOKS: Final = "reflow.notebook.v1.NotebookService"


@pytest.fixture
def quick_env(tmp_path: Path) -> dict[str, str]:
    """A stack that runs no cells: skip warming the kernel zygote (and so its
    sandbox, which needs the zygote)."""
    return stack_env(
        tmp_path / "data", {"EXECUTION_USE_ZYGOTE": "0", "EXECUTION_SANDBOX": "off"}
    )


@pytest.fixture
def started(quick_env: dict[str, str]) -> Iterator[RunningStack]:
    running = launch(quick_env)
    try:
        running.wait_for_line(READY_LINE, START_TIMEOUT_S)
        yield running
    finally:
        running.close()


def run_a_cell(stack: RunningStack) -> None:
    """Create a notebook and run a cell, so the execution service has a kernel."""
    token = stack.token("ada")
    created = grpcurl(
        stack.target, f"{NOTEBOOKS}/CreateNotebook", token=token, data={"name": "k"}
    )
    notebook_id = created.messages()[0]["notebook"]["id"]
    cell = grpcurl(
        stack.target,
        f"{NOTEBOOKS}/CreateCell",
        token=token,
        data={"notebook_id": notebook_id, "code": "print('kernel up')"},
    )
    run = grpcurl(
        stack.target,
        "reflow.execution.v1.ExecutionService/RunCells",
        token=token,
        data={
            "notebook_id": notebook_id,
            "cell_ids": [cell.messages()[0]["cell"]["id"]],
        },
    )
    assert "kernel up" in run.stdout, run.stderr


def test_make_run_serves_and_ctrl_c_leaves_nothing_behind(tmp_path: Path) -> None:
    stack = launch(
        stack_env(tmp_path / "data"), ["make", "--no-print-directory", "run"]
    )
    try:
        url_line = stack.wait_for_line(READY_LINE, MAKE_START_TIMEOUT_S)
        run_a_cell(stack)
        tree = stack.tree()

        stack.interrupt(STOP_TIMEOUT_S)
        leftovers = wait_until_gone(list(tree), STOP_TIMEOUT_S)
    finally:
        stack.close()

    output = stack.output()
    assert f"http://localhost:{stack.http_port}" in url_line
    assert "export TOKEN=ey" in output
    assert "grpcurl -plaintext" in output
    assert any("kernel" in command or "zygote" in command for command in tree.values())
    assert "SIGINT received: stopping the stack" in output
    # Graceful, although `uv run` relays the Ctrl-C a second time.
    assert "killing everything now" not in output
    for name in ("envoy", "gateway", "execution", "notebook"):
        assert f"{name} stopped (exit code 0)" in output
    assert leftovers == [], {pid: tree[pid] for pid in leftovers}


def test_sigterm_stops_every_process_and_exits_zero(started: RunningStack) -> None:
    tree = started.tree()

    started.process.send_signal(signal.SIGTERM)
    code = started.process.wait(timeout=STOP_TIMEOUT_S)

    assert code == 0, started.output()
    assert wait_until_gone(list(tree), STOP_TIMEOUT_S) == []
    for name in ("envoy", "gateway", "execution", "notebook"):
        assert f"{name} stopped (exit code 0)" in started.output()


def test_stop_order_is_front_door_first(started: RunningStack) -> None:
    started.process.send_signal(signal.SIGTERM)
    started.process.wait(timeout=STOP_TIMEOUT_S)

    stopped = [
        line.split("|", 1)[1].split()[0]
        for line in started.output().splitlines()
        if line.startswith("stack") and " stopped (" in line
    ]
    assert stopped[:2] == ["envoy", "gateway"]
    assert stopped[-1] == "notebook"


def test_crashed_service_is_reported_and_stops_the_stack(
    started: RunningStack,
) -> None:
    tree = started.tree()
    notebook = started.child_pids()["notebook"]

    os.kill(notebook, signal.SIGKILL)
    code = started.process.wait(timeout=STOP_TIMEOUT_S)

    assert code == 1
    assert (
        f"!!! notebook (pid {notebook}) exited unexpectedly (killed by SIGKILL)"
        in started.output()
    )
    assert wait_until_gone(list(tree), STOP_TIMEOUT_S) == []


def test_port_in_use_is_named_before_anything_starts(quick_env: dict[str, str]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(quick_env["GATEWAY_GRPC_PORT"])))
        squatter.listen()
        stack = launch(quick_env)
        try:
            code = stack.process.wait(timeout=STOP_TIMEOUT_S)
        finally:
            stack.close()

    assert code == 2
    assert "GATEWAY_GRPC_PORT" in stack.output()
    assert "started" not in stack.output()
