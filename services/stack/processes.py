"""Child processes of the stack: started, their output relayed, stopped for sure.

Each child gets a session (and so a process group) of its own: a Ctrl-C in
the terminal reaches only the runner, which then stops the children in an
order it chooses, and stopping a child signals its whole group, so helpers it
started in that group go with it. Stopping escalates the way jupyter_client
stops kernels: SIGTERM to the group, a grace period, then SIGKILL.

A child's stdout and stderr are merged and relayed line by line to the
``Console``, each line prefixed with the child's name (as honcho and foreman
do), so ``make run`` shows one log stream for the whole stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, TextIO

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

LINE_LIMIT_BYTES: Final = 1024 * 1024
"""Longer lines are dropped with a notice rather than stalling the relay."""

_COLOURS: Final = ("36", "33", "32", "35", "34", "96", "93")


class Console:
    """One output stream shared by the runner and every child, a line at a time.

    The runner writes here rather than through ``logging``: relaying the
    children's output is its job, and its own lines must interleave with
    theirs in one consistently prefixed stream.
    """

    def __init__(self, stream: TextIO = sys.stdout, colour: bool | None = None) -> None:
        self._stream = stream
        if colour is None:
            colour = stream.isatty() and "NO_COLOR" not in os.environ
        self._colour = colour
        self._width = 6
        self._codes: dict[str, str] = {}

    def register(self, name: str) -> None:
        """Reserve a prefix width and a colour for ``name``."""
        self._width = max(self._width, len(name))
        self._codes.setdefault(name, _COLOURS[len(self._codes) % len(_COLOURS)])

    def line(self, name: str, text: str) -> None:
        """Write ``text`` prefixed with ``name``."""
        prefix = f"{name:<{self._width}} |"
        if self._colour:
            prefix = f"\033[{self._codes.get(name, '1')}m{prefix}\033[0m"
        self._stream.write(f"{prefix} {text}\n")
        self._stream.flush()

    def block(self, text: str) -> None:
        """Write ``text`` as it is, unprefixed, so it can be copied and pasted."""
        self._stream.write(text)
        self._stream.flush()


@dataclass(frozen=True)
class ProcessSpec:
    """How to start one child."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Path


@dataclass
class ChildProcess:
    """A started child and the task relaying its output until it exits."""

    spec: ProcessSpec
    process: asyncio.subprocess.Process
    relay: asyncio.Task[None] = field(repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    async def wait(self) -> int:
        """Wait for the child to exit and its output to be relayed; its exit code."""
        code = await self.process.wait()
        # The pipe may stay open a moment longer (a grandchild holding it);
        # what the child wrote should still reach the console, but not forever.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.relay), timeout=1.0)
        return code

    async def stop(self, grace_s: float) -> int:
        """SIGTERM to the group, SIGKILL after ``grace_s``; the exit code."""
        if self.returncode is None:
            _signal_group(self.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout=grace_s)
            except TimeoutError:
                _signal_group(self.pid, signal.SIGKILL)
        code = await self.process.wait()
        # Whatever the child left behind in its group goes too.
        _signal_group(self.pid, signal.SIGKILL)
        self.relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.relay
        return code

    def kill(self) -> None:
        """SIGKILL to the group, now (a second Ctrl-C)."""
        if self.returncode is None:
            _signal_group(self.pid, signal.SIGKILL)


async def start(spec: ProcessSpec, console: Console) -> ChildProcess:
    """Start ``spec`` in a session of its own, relaying its output to ``console``."""
    console.register(spec.name)
    process = await asyncio.create_subprocess_exec(
        *spec.argv,
        env=dict(spec.env),
        cwd=spec.cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        limit=LINE_LIMIT_BYTES,
    )
    assert process.stdout is not None  # stdout=PIPE
    relay = asyncio.create_task(_relay(spec.name, process.stdout, console))
    return ChildProcess(spec, process, relay)


async def _relay(name: str, stdout: asyncio.StreamReader, console: Console) -> None:
    while True:
        try:
            raw = await stdout.readline()
        except ValueError:
            console.line(name, f"(a line longer than {LINE_LIMIT_BYTES} bytes dropped)")
            continue
        if not raw:
            return
        console.line(name, raw.decode(errors="replace").rstrip("\r\n"))


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    # ESRCH: the group is already empty. EPERM: the id was reused by a process
    # that is not ours (possible only long after our child is gone).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
