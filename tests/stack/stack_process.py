"""The real stack as a child process of a test, and the way to be sure it is gone.

``launch`` starts ``python -m services.stack`` (or ``make run``) on free
ports in a session of its own, as a terminal would run it, and collects its
output on a thread so a test can wait for a line. ``RunningStack.close``
stops it like Ctrl-C does and then kills, by process group, everything it
ever saw running: the runner's group and each child's (every child has its
own session), and any process of the tree found by walking /proc.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

ROOT: Final = Path(__file__).resolve().parents[2]
BIN: Final = Path(sys.executable).parent
READY_LINE: Final = "Reflow is running"
STARTED = re.compile(r"started (?P<name>\w+) \(pid (?P<pid>\d+)\)")

MAKE_VARIABLES: Final = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")

PORT_VARIABLES: Final = (
    "REFLOW_HTTP_PORT",
    "NOTEBOOK_PORT",
    "EXECUTION_PORT",
    "ASSISTANT_PORT",
    "GATEWAY_GRPC_PORT",
    "GATEWAY_HTTP_PORT",
    "REFLOW_ENVOY_METRICS_PORT",
    "NOTEBOOK_METRICS_PORT",
    "EXECUTION_METRICS_PORT",
    "ASSISTANT_METRICS_PORT",
    "GATEWAY_METRICS_PORT",
)


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on loopback right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def stack_env(data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a stack on free ports with its data in ``data_dir``."""
    env = dict(os.environ)
    env.update(
        zip(PORT_VARIABLES, map(str, free_ports(len(PORT_VARIABLES))), strict=True)
    )
    env["REFLOW_DATA_DIR"] = str(data_dir)
    env["REFLOW_CORS_ORIGINS"] = "http://localhost:5173,https://app.example.test"
    env["PYTHONUNBUFFERED"] = "1"
    # The stack must not pick up a developer's own settings, nor, when the
    # tests themselves run under `make test`, the outer make's flags.
    for name in (
        "GATEWAY_JWKS_URL",
        "CLERK_FRONTEND_API",
        "NOTEBOOK_STORE",
        # Nor a developer's model: a test stack talks to a scripted one or none.
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "ASSISTANT_MODEL",
        *MAKE_VARIABLES,
    ):
        env.pop(name, None)
    env.update(extra or {})
    return env


@dataclass
class RunningStack:
    """A started stack: its process, environment and what it printed."""

    process: subprocess.Popen[str]
    env: dict[str, str]
    lines: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    seen: dict[int, str] = field(default_factory=dict)
    reader: threading.Thread | None = None

    @property
    def http_port(self) -> int:
        return int(self.env["REFLOW_HTTP_PORT"])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def target(self) -> str:
        """The gRPC target of the front door (Envoy)."""
        return f"127.0.0.1:{self.http_port}"

    @property
    def data_dir(self) -> Path:
        return Path(self.env["REFLOW_DATA_DIR"])

    def output(self) -> str:
        with self.changed:
            return "\n".join(self.lines)

    def wait_for_line(self, text: str, timeout_s: float) -> str:
        """The first line printed with ``text`` in it; AssertionError on timeout."""
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (
                    self.process.poll() is not None and not self._reading()
                ):
                    raise AssertionError(
                        f"no line with {text!r} within {timeout_s}s; output:\n"
                        + "\n".join(self.lines[-60:])
                    )
                self.changed.wait(min(remaining, 0.5))

    def child_pids(self) -> dict[str, int]:
        """The pid of each child the runner said it started."""
        found = {}
        for line in self.output().splitlines():
            match = STARTED.search(line)
            if match:
                found[match["name"]] = int(match["pid"])
        return found

    def tree(self) -> dict[int, str]:
        """Every live process under the runner (pid -> command line); remembered."""
        tree = process_tree(self.process.pid)
        self.seen.update(tree)
        return tree

    def token(self, user: str) -> str:
        """A dev token from the gateway's own command, as `make token` prints it."""
        # The stack puts the gateway's data (its dev key) under its data dir.
        env = {**self.env, "GATEWAY_DATA_DIR": str(self.data_dir / "gateway")}
        result = subprocess.run(
            [sys.executable, "-m", "services.gateway.devtoken", user],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return result.stdout.strip()

    def interrupt(self, timeout_s: float = 60.0) -> int:
        """Ctrl-C as a terminal sends it (to the whole group); the exit code."""
        self.tree()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout=timeout_s)

    def close(self) -> None:
        """Leave nothing behind, whatever state the stack is in."""
        if self.process.poll() is None:
            self.tree()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30)
        if self.process.poll() is None:
            self.tree()
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        for pid, command in self.seen.items():
            _kill_if_still(pid, command)
        if self.reader is not None:
            self.reader.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def _reading(self) -> bool:
        return self.reader is not None and self.reader.is_alive()


def launch(env: dict[str, str], argv: Sequence[str] | None = None) -> RunningStack:
    """Start the stack (``python -m services.stack`` unless ``argv`` says otherwise)."""
    process = subprocess.Popen(
        list(argv or [sys.executable, "-m", "services.stack"]),
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Its own group, like a job in a terminal: Ctrl-C goes to the group.
        start_new_session=True,
    )
    stack = RunningStack(process, env)
    assert process.stdout is not None
    stack.reader = threading.Thread(
        target=_collect, args=(process.stdout, stack), daemon=True
    )
    stack.reader.start()
    return stack


def _collect(stream: IO[str], stack: RunningStack) -> None:
    for line in stream:
        with stack.changed:
            stack.lines.append(line.rstrip("\n"))
            stack.changed.notify_all()
    with stack.changed:
        stack.changed.notify_all()


def process_tree(root: int) -> dict[int, str]:
    """``root`` and its live descendants (pid -> command line), from /proc."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        # The command name (2nd field) may hold spaces; it ends at the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z":
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        commands[pid] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    tree = {root} if root in parents else set()
    grew = True
    while grew:
        new = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= new
        grew = bool(new)
    return {pid: commands[pid] for pid in tree}


def _kill_if_still(pid: int, command: str) -> None:
    """SIGKILL ``pid`` (its group too, if it leads one) if it still runs ``command``.

    The command check keeps a recycled pid, now someone else's process, alive.
    """
    try:
        current = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if current.replace(b"\0", b" ").decode(errors="replace").strip() != command:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)


def alive(pids: Sequence[int]) -> list[int]:
    """Those of ``pids`` that are still running (zombies count as gone)."""
    running = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] != "Z":
            running.append(pid)
    return running


def wait_until_gone(pids: Sequence[int], timeout_s: float) -> list[int]:
    """Wait for ``pids`` to end; those still alive at the timeout.

    Waits on pidfds (readable once a process has ended), so no polling.
    """
    deadline = time.monotonic() + timeout_s
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        finally:
            os.close(fd)
    return alive(pids)
