"""The stack's life: start in stages, wait until ready, serve, stop everything.

The runner is a small asyncio supervisor rather than honcho: honcho's
``Manager.loop()`` owns the main thread and the signal handlers, has no
readiness hook (waiting for health before starting Envoy and printing the
banner would need a second thread poking its unsynchronised state), returns
130/143 after Ctrl-C where we want 0, says "stopped (rc=1)" for a crash as
quietly as for a normal stop, and waits a fixed 5 s before SIGKILL. What we
would keep from it, prefixed output and signalling process groups, is
``processes.py``.

Outcomes, and the exit code of ``python -m services.stack``:

* SIGINT, SIGTERM or SIGHUP: every child is stopped (front door first, see
  ``plan.py``; SIGTERM, then SIGKILL after the grace period); exit 0. A
  second signal, a second or more after the first, kills what is left at
  once (one sooner is the first relayed again, by ``uv run`` for one).
* A child exits on its own, at any time: reported loudly with its name and
  exit code, the others are stopped; exit 1.
* A child is not ready within the start timeout: reported with the probe
  that failed, the others are stopped; exit 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING, Final

from services.stack.probes import wait_until_ready
from services.stack.processes import ChildProcess, Console, start

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from services.stack.plan import Member

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
REPEAT_WINDOW_S: Final = 1.0
"""A second signal sooner than this after the first is the same one, relayed."""
RUNNER: Final = "stack"


class StackFailed(Exception):
    """The stack cannot go on: a child crashed or never became ready."""


class Supervisor:
    """The started children, watched for exits, stopped rank by rank."""

    def __init__(self, console: Console, grace_s: float) -> None:
        self._console = console
        self._grace_s = grace_s
        self._children: list[tuple[Member, ChildProcess]] = []
        self._exits: dict[asyncio.Task[int], ChildProcess] = {}
        self._starting: set[asyncio.Task[ChildProcess]] = set()

    @property
    def children(self) -> list[ChildProcess]:
        return [child for _, child in self._children]

    async def start(self, member: Member) -> ChildProcess:
        """Start ``member``; a child is registered even if the caller is cancelled."""
        # Shielded, and awaited by stop_all: a Ctrl-C while a process is being
        # created must not leave that process unknown, hence unstopped.
        task = asyncio.create_task(self._start(member))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)
        return await asyncio.shield(task)

    async def _start(self, member: Member) -> ChildProcess:
        child = await start(member.spec, self._console)
        self._children.append((member, child))
        self._exits[asyncio.create_task(child.wait())] = child
        self._console.line(RUNNER, f"started {child.name} (pid {child.pid})")
        return child

    async def first_exit(self) -> ChildProcess:
        """The first child to exit (waits forever if none ever does)."""
        if not self._exits:
            await asyncio.Event().wait()
        done, _ = await asyncio.wait(self._exits, return_when=asyncio.FIRST_COMPLETED)
        return self._exits[next(iter(done))]

    async def stop_all(self) -> None:
        """Stop every child, rank by rank; the children of one rank together."""
        await asyncio.gather(*self._starting, return_exceptions=True)
        for rank in sorted({member.stop_rank for member, _ in self._children}):
            group = [c for m, c in self._children if m.stop_rank == rank]
            codes = await asyncio.gather(*(c.stop(self._grace_s) for c in group))
            for child, code in zip(group, codes, strict=True):
                self._console.line(RUNNER, f"{child.name} stopped ({_exit(code)})")
        for task in self._exits:
            task.cancel()
        await asyncio.gather(*self._exits, return_exceptions=True)

    def kill_all(self) -> None:
        for child in self.children:
            child.kill()


async def run_stack(
    members: Sequence[Member],
    console: Console,
    start_timeout_s: float,
    grace_s: float,
    on_ready: Callable[[Sequence[ChildProcess]], Awaitable[None]],
) -> int:
    """Run ``members`` until a signal (0) or a failure (1)."""
    for member in members:
        console.register(member.spec.name)
    supervisor = Supervisor(console, grace_s)
    stop_requested = asyncio.Event()
    _install_signal_handlers(console, supervisor, stop_requested)
    try:
        await _race(
            _serve(members, supervisor, console, start_timeout_s, on_ready),
            stop_requested.wait(),
        )
        return 0
    except StackFailed as failure:
        console.line(RUNNER, f"!!! {failure} - stopping the stack")
        return 1
    finally:
        await supervisor.stop_all()
        _remove_signal_handlers()


async def _serve(
    members: Sequence[Member],
    supervisor: Supervisor,
    console: Console,
    start_timeout_s: float,
    on_ready: Callable[[Sequence[ChildProcess]], Awaitable[None]],
) -> None:
    """Start stage by stage, announce, then wait for a crash (raised)."""
    for stage in sorted({member.start_stage for member in members}):
        started = [
            (member, await supervisor.start(member))
            for member in members
            if member.start_stage == stage
        ]
        await _race(
            _all_ready(started, console, start_timeout_s),
            _crash(supervisor),
        )
    await _race(on_ready(supervisor.children), _crash(supervisor))
    await _crash(supervisor)


async def _all_ready(
    started: Sequence[tuple[Member, ChildProcess]],
    console: Console,
    timeout_s: float,
) -> None:
    """Every probe of every started member passes, or StackFailed."""

    async def one(member: Member, child: ChildProcess) -> None:
        for probe in member.probes:
            if not await wait_until_ready(probe, timeout_s):
                raise StackFailed(
                    f"{child.name} is not ready after {timeout_s:g}s "
                    f"({probe.describe()} never passed)"
                )
        console.line(RUNNER, f"{child.name} is ready")

    try:
        # A TaskGroup cancels the other probes as soon as one fails.
        async with asyncio.TaskGroup() as group:
            for member, child in started:
                group.create_task(one(member, child))
    except ExceptionGroup as errors:
        failures = [e for e in errors.exceptions if isinstance(e, StackFailed)]
        if failures:
            raise failures[0] from None
        raise


async def _crash(supervisor: Supervisor) -> None:
    child = await supervisor.first_exit()
    raise StackFailed(
        f"{child.name} (pid {child.pid}) exited unexpectedly "
        f"({_exit(child.returncode)})"
    )


async def _race(*awaitables: Awaitable[object]) -> None:
    """Wait for the first to finish (re-raising its error); cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


def _install_signal_handlers(
    console: Console, supervisor: Supervisor, stop_requested: asyncio.Event
) -> None:
    loop = asyncio.get_running_loop()
    first_at: list[float] = []

    def on_signal(signum: signal.Signals) -> None:
        if not first_at:
            first_at.append(loop.time())
            console.line(RUNNER, f"{signum.name} received: stopping the stack")
            stop_requested.set()
            return
        if loop.time() - first_at[0] < REPEAT_WINDOW_S:
            # The same Ctrl-C again: `uv run` (what `make run` starts us
            # with) forwards the SIGINT the terminal already sent us.
            return
        console.line(RUNNER, f"{signum.name} again: killing everything now")
        supervisor.kill_all()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)


def _remove_signal_handlers() -> None:
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.remove_signal_handler(signum)
