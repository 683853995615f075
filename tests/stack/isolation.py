"""What the isolation tests share: a stack to attack, and cells run on it.

``attack_stack`` starts the real stack (every service, Envoy) with limits
small enough to hit quickly; ``as_uid`` starts it as an ordinary user, as
on a laptop (kernels are then confined by user namespaces, not by uids).
``Notebook`` runs a cell for one user through Envoy over gRPC, like any
client, and returns what the cell printed and how it ended.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import grpc

from reflow.execution.v1 import execution_pb2, execution_pb2_grpc
from reflow.notebook.v1 import notebook_pb2, notebook_pb2_grpc
from tests.stack.stack_process import READY_LINE, ROOT, launch, stack_env

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tests.stack.stack_process import RunningStack

START_TIMEOUT_S: Final = 120.0
RUN_TIMEOUT_S: Final = 120.0
# Small enough to reach in a test, big enough for pandas and subprocesses.
LIMITS: Final = {
    "EXECUTION_MEMORY_LIMIT_MB": "512",
    "EXECUTION_MAX_PROCESSES": "48",
    "EXECUTION_SCRATCH_LIMIT_MB": "64",
}
# The constant older versions fell back to without REFLOW_INTERNAL_SECRET.
OLD_DEV_SECRET: Final = "dev-internal-secret-change-me-never-use-in-production"


@dataclass
class CellRun:
    """How a cell ended and what it printed."""

    status: int
    stdout: str
    error: str

    @property
    def ok(self) -> bool:
        return self.status == notebook_pb2.CELL_STATUS_SUCCESS


class Notebook:
    """One user's notebook on the stack, driven through Envoy."""

    def __init__(self, stack: RunningStack, user: str) -> None:
        self.stack = stack
        self.user = user
        self._metadata = (("authorization", f"Bearer {stack.token(user)}"),)
        self._channel = grpc.insecure_channel(stack.target)
        self.notebooks = notebook_pb2_grpc.NotebookServiceStub(self._channel)
        self.execution = execution_pb2_grpc.ExecutionServiceStub(self._channel)
        created = self.notebooks.CreateNotebook(
            notebook_pb2.CreateNotebookRequest(name=f"{user}'s"),
            metadata=self._metadata,
            timeout=30,
        )
        self.id = created.notebook.id

    def run(self, code: str, keep: bool = False) -> CellRun:
        """Add ``code`` as a cell and run it; its result.

        The cell is deleted afterwards unless ``keep``: attacks reuse names
        (``json``, ``os``), which two cells of one notebook may not define.
        """
        cell = self.notebooks.CreateCell(
            notebook_pb2.CreateCellRequest(notebook_id=self.id, code=code),
            metadata=self._metadata,
            timeout=30,
        ).cell
        request = execution_pb2.RunCellsRequest(notebook_id=self.id, cell_ids=[cell.id])
        stdout, error, status = [], "", notebook_pb2.CELL_STATUS_UNSPECIFIED
        for response in self.execution.RunCells(
            request, metadata=self._metadata, timeout=RUN_TIMEOUT_S
        ):
            event = response.event
            if event.HasField("stream_chunk"):
                stdout.append(event.stream_chunk.text)
            elif event.HasField("cell_finished") and event.cell_id == cell.id:
                result = event.cell_finished.result
                status = result.status
                error = f"{result.error.type}: {result.error.message}"
        if not keep:
            self.notebooks.DeleteCell(
                notebook_pb2.DeleteCellRequest(notebook_id=self.id, cell_id=cell.id),
                metadata=self._metadata,
                timeout=30,
            )
        return CellRun(status, "".join(stdout), error)

    def put_file(self, path: str, content: bytes) -> None:
        """Upload a file to the notebook (PutFile), as a user does."""
        self.notebooks.PutFile(
            notebook_pb2.PutFileRequest(
                notebook_id=self.id, path=path, content=content
            ),
            metadata=self._metadata,
            timeout=30,
        )

    def list_files(self) -> list[str]:
        """The paths ListFiles shows for the notebook."""
        reply = self.notebooks.ListFiles(
            notebook_pb2.ListFilesRequest(notebook_id=self.id),
            metadata=self._metadata,
            timeout=30,
        )
        return [file.path for file in reply.files]

    def kernel_pid(self) -> int:
        """The pid the execution service reports for this notebook's kernel."""
        reply = self.execution.GetKernel(
            execution_pb2.GetKernelRequest(notebook_id=self.id),
            metadata=self._metadata,
            timeout=30,
        )
        return reply.kernel.pid

    def restart(self) -> None:
        """RestartKernel, as a user asks for it."""
        self.execution.RestartKernel(
            execution_pb2.RestartKernelRequest(notebook_id=self.id),
            metadata=self._metadata,
            timeout=60,
        )

    def close(self) -> None:
        self._channel.close()


def attack_stack(data_dir: Path, uid: int | None = None) -> RunningStack:
    """A running stack with small kernel limits; as ``uid`` if given."""
    extra = dict(LIMITS)
    argv: Sequence[str] | None = None
    if uid is not None:
        home = data_dir / "home"
        for path in (data_dir, home):
            path.mkdir(exist_ok=True)
            os.chown(path, uid, uid)
        extra["HOME"] = str(home)
        argv = as_uid(uid, [sys.executable, "-m", "services.stack"])
    running = launch(stack_env(data_dir, extra), argv)
    try:
        running.wait_for_line(READY_LINE, START_TIMEOUT_S)
    except BaseException:
        running.close()
        raise
    return running


def as_uid(uid: int, argv: Sequence[str]) -> list[str]:
    """``argv`` run as ``uid`` (no groups, no capabilities), like a laptop user.

    The Python this runs, or this checkout, may live under a directory that
    user cannot enter (``/root/.pyenv``, as on this project's machines); a
    private mount namespace then shows it those paths and nothing else there.
    """
    needed_under: dict[Path, set[Path]] = {}
    for path in (Path(sys.base_prefix).resolve(), ROOT.resolve()):
        for hidden, needed in _closed_ancestors(path):
            needed_under.setdefault(hidden, set()).add(needed)
    script = []
    for number, (hidden, children) in enumerate(sorted(needed_under.items())):
        keeps = {
            child: f"/tmp/.reflow-keep-{uid}-{number}-{i}"
            for i, child in enumerate(sorted(children))
        }
        for child, keep in keeps.items():
            script += [
                f"mkdir -p {keep}",
                f"mount --bind {shlex.quote(str(child))} {keep}",
            ]
        script.append(f"mount -t tmpfs -o mode=0755 tmpfs {shlex.quote(str(hidden))}")
        for child, keep in keeps.items():
            script += [
                f"mkdir -p {shlex.quote(str(child))}",
                f"mount --move {keep} {shlex.quote(str(child))}",
            ]
    script.append(
        f"cd {shlex.quote(str(ROOT))} && exec setpriv --reuid={uid} --regid={uid} "
        "--clear-groups --inh-caps=-all --bounding-set=-all -- "
        + " ".join(shlex.quote(arg) for arg in argv)
    )
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        "; ".join(script),
    ]


def _closed_ancestors(path: Path) -> list[tuple[Path, Path]]:
    """(the outermost ancestor of ``path`` others cannot enter, ``path``).

    Bound back whole under a fresh tmpfs on that ancestor, ``path`` is
    reached through directories the tmpfs made, open to everyone.
    """
    for ancestor in reversed(path.parents):
        if ancestor != Path("/") and not os.stat(ancestor).st_mode & 0o001:
            return [(ancestor, path)]
    return []


def user_namespaces_allowed() -> bool:
    """Whether this machine lets an ordinary user create user namespaces."""
    try:
        maximum = int(Path("/proc/sys/user/max_user_namespaces").read_text())
    except (OSError, ValueError):
        return False
    unprivileged = Path("/proc/sys/kernel/unprivileged_userns_clone")
    if unprivileged.exists() and unprivileged.read_text().strip() == "0":
        return False
    return maximum > 0
