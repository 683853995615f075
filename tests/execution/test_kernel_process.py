"""Kernel processes from the service's side: zygote, lifecycle, misbehaviour.

Most tests share one zygote launcher (starting one imports pandas and
matplotlib, seconds on a small machine), so the module runs on one event
loop; tests that kill or close a launcher make their own. Misbehaving kernels
(``fake_kernels.py``) run as plain subprocesses. Every test checks that it
left no process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from reflow.execution.v1 import kernel_pb2
from reflow.notebook.v1 import notebook_pb2
from services.execution.kernel.launcher import KernelLauncher
from services.execution.kernel.process import KernelDied

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Iterator

    from services.execution.kernel.process import KernelProcess

pytestmark = pytest.mark.asyncio(loop_scope="module")

FAKE = "tests.execution.fake_kernels"
WORKER = "services.execution.kernel.worker"
TIMEOUT_S = 30.0
MIB = 1024 * 1024
Status = notebook_pb2.CellStatus


# -- helpers ------------------------------------------------------------------


def cell(code: str, cell_id: str = "c1") -> kernel_pb2.ExecuteRequest:
    return kernel_pb2.ExecuteRequest(
        cell_id=cell_id, code=code, cell_type=notebook_pb2.CELL_TYPE_PYTHON
    )


async def run(kernel: KernelProcess, code: str) -> list[kernel_pb2.KernelEvent]:
    """Run one cell and return all its events."""
    async with asyncio.timeout(TIMEOUT_S):
        return [event async for event in kernel.execute(cell(code))]


async def first_event(
    events: AsyncGenerator[kernel_pb2.KernelEvent, None],
) -> kernel_pb2.KernelEvent:
    return await anext(events)


def text_outputs(events: list[kernel_pb2.KernelEvent]) -> list[str]:
    return [
        e.output.text
        for e in events
        if e.HasField("output") and e.output.mime_type == "text/plain"
    ]


def done_of(events: list[kernel_pb2.KernelEvent]) -> kernel_pb2.ExecuteDone:
    assert events[-1].HasField("done")
    return events[-1].done


async def stop(kernel: KernelProcess) -> str:
    kernel.kill()
    async with asyncio.timeout(TIMEOUT_S):
        return await kernel.wait_exited()


def proc_status(pid: int) -> dict[str, str]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def mapped_files(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def is_running(pid: int) -> bool:
    """True for a live process; false once it is gone or a zombie."""
    state = proc_status(pid).get("State", "Z")
    return not state.startswith("Z")


def descendants(root: int) -> dict[int, int]:
    """Every live process below ``root``, with its parent."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            status = proc_status(int(entry.name))
            if "PPid" in status and not status.get("State", "Z").startswith("Z"):
                children.setdefault(int(status["PPid"]), []).append(int(entry.name))
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        parent = todo.pop()
        for child in children.get(parent, []):
            found[child] = parent
            todo.append(child)
    return found


def is_zygote(pid: int) -> bool:
    try:
        return b"kernel.zygote" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@contextlib.asynccontextmanager
async def fake_launcher(
    behaviour: str, *args: str, start_timeout_s: float = TIMEOUT_S
) -> AsyncIterator[KernelLauncher]:
    """A subprocess launcher running a fake kernel with ``behaviour``."""
    launcher = KernelLauncher(
        use_zygote=False,
        worker_module=FAKE,
        worker_args=("--behaviour", behaviour, *args),
        start_timeout_s=start_timeout_s,
    )
    async with launcher:
        yield launcher


# -- fixtures -----------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def zygote() -> AsyncIterator[KernelLauncher]:
    """One zygote launcher of real kernels, shared by the module's tests."""
    async with KernelLauncher(worker_module=WORKER) as launcher:
        yield launcher


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def subprocesses() -> AsyncIterator[KernelLauncher]:
    """The fallback launcher of real kernels (cold Python per kernel)."""
    async with KernelLauncher(use_zygote=False, worker_module=WORKER) as launcher:
        yield launcher


@pytest.fixture(params=["zygote", "subprocess"])
def launcher(
    request: pytest.FixtureRequest,
    zygote: KernelLauncher,
    subprocesses: KernelLauncher,
) -> KernelLauncher:
    return zygote if request.param == "zygote" else subprocesses


@pytest_asyncio.fixture(loop_scope="module")
async def kernel(zygote: KernelLauncher) -> AsyncIterator[KernelProcess]:
    kernel = await zygote.spawn()
    yield kernel
    await stop(kernel)


@pytest.fixture(autouse=True)
def no_processes_left_behind() -> Iterator[None]:
    # The shared zygote outlives single tests (its kernels must not).
    before = descendants(os.getpid())
    yield
    left = {
        pid: parent
        for pid, parent in descendants(os.getpid()).items()
        if pid not in before and not (parent == os.getpid() and is_zygote(pid))
    }
    assert left == {}


# -- starting -------------------------------------------------------------------


async def test_zygote_kernel_runs_cells(kernel: KernelProcess) -> None:
    await run(kernel, "x = 1")

    events = await run(kernel, "x")

    assert text_outputs(events) == ["1"]
    assert done_of(events).status == Status.CELL_STATUS_SUCCESS


async def test_kernels_are_independent_processes(zygote: KernelLauncher) -> None:
    first, second = await zygote.spawn(), await zygote.spawn()
    try:
        await run(first, "x = 1")

        events = await run(second, "x")

        assert done_of(events).error.type == "NameError"
        assert first.pid != second.pid
        assert {os.getpgid(first.pid), os.getpgid(second.pid)} == {
            first.pid,
            second.pid,
        }
        assert proc_status(first.pid)["PPid"] == str(zygote.zygote_pid)
    finally:
        await stop(first)
        await stop(second)


async def test_zygote_never_imports_grpc(
    zygote: KernelLauncher, kernel: KernelProcess
) -> None:
    events = await run(
        kernel, "import sys\nsorted(m for m in sys.modules if 'grpc' in m)"
    )

    maps = mapped_files(zygote.zygote_pid or 0)
    assert text_outputs(events) == ["[]"]
    assert "grpc" not in maps


async def test_zygote_is_single_threaded() -> None:
    async with KernelLauncher(worker_module=FAKE) as launcher:
        # Before its first kernel: numpy's thread pool is already stopped.
        assert proc_status(launcher.zygote_pid or 0)["Threads"] == "1"


async def test_slow_kernel_is_waited_for() -> None:
    async with fake_launcher("slow-start", "--start-delay-s", "0.5") as launcher:
        kernel = await launcher.spawn()

        assert text_outputs(await run(kernel, "1 + 1")) == ["2"]


async def test_kernel_that_never_gets_ready_is_killed() -> None:
    async with fake_launcher(
        "slow-start", "--start-delay-s", "60", start_timeout_s=0.5
    ) as launcher:
        with pytest.raises(KernelDied, match="did not start within 0.5 s"):
            await launcher.spawn()


async def test_kernel_crashing_on_start_reports_its_exit() -> None:
    async with fake_launcher("crash-on-start") as launcher:
        with pytest.raises(KernelDied, match="exited with code 1"):
            await launcher.spawn()


# -- running --------------------------------------------------------------------


async def test_deleted_names_are_gone(kernel: KernelProcess) -> None:
    await run(kernel, "x = 1")

    async with asyncio.timeout(TIMEOUT_S):
        await kernel.delete_names(["x"])

    assert done_of(await run(kernel, "x")).error.type == "NameError"


async def test_abandoned_cell_is_drained_before_the_next(kernel: KernelProcess) -> None:
    events = kernel.execute(cell("print('a')\n41"))
    async with contextlib.aclosing(events), asyncio.timeout(TIMEOUT_S):
        await anext(events)

    assert text_outputs(await run(kernel, "42")) == ["42"]


async def test_interrupt_stops_a_busy_cell(kernel: KernelProcess) -> None:
    events = kernel.execute(cell("print('spinning', flush=True)\nwhile True: pass"))
    async with contextlib.aclosing(events), asyncio.timeout(TIMEOUT_S):
        await anext(events)  # the print: the loop is running
        kernel.interrupt()
        rest = [event async for event in events]

    assert done_of(rest).status == Status.CELL_STATUS_INTERRUPTED
    assert text_outputs(await run(kernel, "1 + 1")) == ["2"]


async def test_memory_bytes_of_a_live_kernel(zygote: KernelLauncher) -> None:
    kernel = await zygote.spawn()

    rss, pss = kernel.memory_bytes(), kernel.pss_bytes()
    await stop(kernel)

    assert rss > 0
    assert 0 < pss < rss  # pages shared with the zygote count in part
    assert kernel.memory_bytes() == 0


async def test_memory_limit_stops_a_huge_allocation(zygote: KernelLauncher) -> None:
    kernel = await zygote.spawn(memory_limit_bytes=512 * MIB)
    try:
        events = await run(kernel, "b = bytearray(4 * 1024**3)")
    except KernelDied as died:
        outcome = died.reason
    else:
        outcome = done_of(events).error.type
    finally:
        await stop(kernel)

    # Either the cell fails or the kernel dies; the service is untouched.
    assert outcome == "MemoryError" or "killed" in outcome or "exited" in outcome


# -- dying ----------------------------------------------------------------------


async def test_kernel_killed_mid_cell_reports_the_signal(
    launcher: KernelLauncher,
) -> None:
    kernel = await launcher.spawn()

    with pytest.raises(KernelDied, match=r"killed by signal 9 \(SIGKILL\)"):
        await run(kernel, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")

    assert not kernel.alive
    assert kernel.exit_reason == "killed by signal 9 (SIGKILL)"


async def test_kernel_exiting_mid_cell_reports_the_code(
    launcher: KernelLauncher,
) -> None:
    kernel = await launcher.spawn()

    with pytest.raises(KernelDied, match="exited with code 3") as died:
        await run(kernel, "import os\nos._exit(3)")

    assert died.value.reason == "exited with code 3"
    assert died.value.info_reason == "KERNEL_DIED"


async def test_dead_kernel_refuses_the_next_cell(kernel: KernelProcess) -> None:
    with pytest.raises(KernelDied):
        await run(kernel, "import os\nos._exit(3)")

    with pytest.raises(KernelDied, match="exited with code 3"):
        await run(kernel, "1")


@pytest.mark.parametrize("behaviour", ["malformed-frame", "oversized-frame"])
async def test_malformed_frame_kills_the_kernel(behaviour: str) -> None:
    async with fake_launcher(behaviour) as launcher:
        kernel = await launcher.spawn()

        with pytest.raises(KernelDied, match="malformed"):
            await run(kernel, "1")

        async with asyncio.timeout(TIMEOUT_S):
            assert await kernel.wait_exited() == "killed by signal 9 (SIGKILL)"


# -- stopping -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "reason", "steps"),
    [
        ("normal", "exited with code 0", 1),
        ("ignore-shutdown", "killed by signal 15 (SIGTERM)", 2),
        ("ignore-sigterm", "killed by signal 9 (SIGKILL)", 3),
    ],
)
async def test_shutdown_escalates(behaviour: str, reason: str, steps: int) -> None:
    timeout_s = 0.5
    async with fake_launcher(behaviour) as launcher:
        kernel = await launcher.spawn()
        started = time.monotonic()

        ended = await kernel.shutdown(timeout_s)

        assert ended == reason
        assert time.monotonic() - started < steps * timeout_s + 1.0
        assert not is_running(kernel.pid)


async def test_zygote_is_restarted_and_its_kernels_survive() -> None:
    async with KernelLauncher(worker_module=WORKER) as launcher:
        old_zygote = launcher.zygote_pid
        assert old_zygote is not None
        survivor = await launcher.spawn()
        os.kill(old_zygote, signal.SIGKILL)

        kernel = await launcher.spawn()

        assert launcher.zygote_pid not in (None, old_zygote)
        assert text_outputs(await run(kernel, "1 + 1")) == ["2"]
        assert text_outputs(await run(survivor, "2 + 2")) == ["4"]
        pids = {old_zygote, launcher.zygote_pid, kernel.pid, survivor.pid}

    assert not any(is_running(pid) for pid in pids if pid is not None)


async def test_closing_the_launcher_leaves_no_processes() -> None:
    launcher = KernelLauncher(worker_module=WORKER)
    await launcher.start()
    kernels = [await launcher.spawn(), await launcher.spawn()]
    busy = kernels[0].execute(cell("while True: pass"))
    running = asyncio.create_task(first_event(busy))
    pids = {launcher.zygote_pid, *(k.pid for k in kernels)}

    await launcher.close()

    with pytest.raises(KernelDied):
        await running
    await busy.aclose()
    assert not any(is_running(pid) for pid in pids if pid is not None)


async def test_an_unconfined_kernel_gets_a_private_working_directory(
    launcher: KernelLauncher,
) -> None:
    kernel = await launcher.spawn()
    try:
        opened = await kernel.workdir(
            kernel_pb2.WorkdirRequest(
                open=kernel_pb2.OpenWorkdir(confined=False, max_file_bytes=100)
            )
        )
        written = await kernel.workdir(
            kernel_pb2.WorkdirRequest(
                write=kernel_pb2.WriteWorkdirFile(path="in/a.txt", content=b"hello")
            )
        )
        events = await run(
            kernel,
            "import os\nprint(os.getcwd())\nprint(open('in/a.txt').read())\n"
            "open('out.txt', 'w').write('x')",
        )
        quiet = await run(kernel, "y = 1")
    finally:
        # Asked to stop, not killed: the kernel tidies up on its way out.
        await kernel.shutdown(TIMEOUT_S)

    assert (opened.error, written.error) == ("", "")
    printed = "".join(e.stream_chunk.text for e in events if e.HasField("stream_chunk"))
    directory, content = printed.splitlines()
    assert Path(directory).name.startswith("reflow-work-")
    assert content == "hello"
    changed = [e.file_changed for e in events if e.HasField("file_changed")]
    assert [(c.path, c.content) for c in changed] == [("out.txt", b"x")]
    assert not [e for e in quiet if e.HasField("file_changed")]
    # The kernel's directory on the host's /tmp went with it.
    assert not await asyncio.to_thread(Path(directory).exists)
