"""Kernel start time and memory: forked from the zygote vs cold subprocesses.

DESIGN.md §9 asks that a new notebook's first run, kernel start included,
costs at most a tenth of Jupyter's, and that ten idle kernels cost at most
0.4 × Jupyter's total PSS (also after `import pandas, matplotlib` in each).
This measures the kernel side of both, for the two ways ``KernelLauncher``
starts kernels:

* start: ``spawn()`` until the kernel said it is ready, and the first cell
  (``x = 1``) after a fresh spawn, over ``--starts`` kernels;
* memory: ``--kernels`` idle kernels' total PSS (``/proc/PID/smaps_rollup``),
  then again after each ran ``import pandas, matplotlib.pyplot``. For the
  zygote the zygote's own PSS is shown too: it is the price of the design.

Run: ``python bench/kernel_start.py [--kernels 10] [--starts 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING

from reflow.execution.v1 import kernel_pb2
from reflow.notebook.v1 import notebook_pb2
from services.execution.kernel.launcher import KernelLauncher
from services.execution.kernel.process import process_tree
from services.execution.kernel.sandbox import SandboxConfig

if TYPE_CHECKING:
    from services.execution.kernel.process import KernelProcess

MIB = 1024 * 1024
TIMEOUT_S = 120.0


async def run(kernel: KernelProcess, code: str) -> None:
    request = kernel_pb2.ExecuteRequest(
        cell_id="bench", code=code, cell_type=notebook_pb2.CELL_TYPE_PYTHON
    )
    async with asyncio.timeout(TIMEOUT_S):
        async for event in kernel.execute(request):
            if event.HasField("done") and event.done.status != (
                notebook_pb2.CELL_STATUS_SUCCESS
            ):
                raise SystemExit(f"bench cell failed: {event.done.error.message}")


def pss_bytes(*pids: int, descendants: bool = True) -> int:
    """PSS of ``pids`` (and their descendants), each process counted once.

    A confined kernel is an init and the kernel under it, both of them what
    the notebook costs; the zygote is the parent of every kernel's init, so
    the zygote alone is ``descendants=False``.
    """
    members = (
        {member for pid in pids for member in process_tree(pid)}
        if descendants
        else set(pids)
    )
    total = 0
    for member in members:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
    return total


async def time_starts(launcher: KernelLauncher, starts: int) -> tuple[float, float]:
    """Median ms from spawn() to ready, and to the first cell's done."""
    ready_ms, first_run_ms = [], []
    for _ in range(starts):
        started = time.perf_counter()
        kernel = await launcher.spawn()
        ready_ms.append((time.perf_counter() - started) * 1e3)
        await run(kernel, "x = 1")
        first_run_ms.append((time.perf_counter() - started) * 1e3)
        await kernel.shutdown(5.0)
    return statistics.median(ready_ms), statistics.median(first_run_ms)


async def measure_memory(
    launcher: KernelLauncher, count: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    """(kernels', zygote's) PSS with ``count`` idle kernels, then after imports."""
    kernels = [await launcher.spawn() for _ in range(count)]
    zygote = launcher.zygote_pid

    def snapshot() -> tuple[int, int]:
        # Taken together: shared pages are split among whoever maps them now.
        total = sum(kernel.pss_bytes() for kernel in kernels)
        return total, pss_bytes(zygote, descendants=False) if zygote else 0

    idle = snapshot()
    for kernel in kernels:
        await run(kernel, "import pandas, matplotlib.pyplot")
    loaded = snapshot()
    for kernel in kernels:
        await kernel.shutdown(5.0)
    return idle, loaded


async def bench(use_zygote: bool, confined: bool, kernels: int, starts: int) -> None:
    label = ("zygote" if use_zygote else "subprocess") + (
        ", confined" if confined else ", not confined"
    )
    launcher = KernelLauncher(
        use_zygote=use_zygote,
        start_timeout_s=TIMEOUT_S,
        sandbox=SandboxConfig() if confined else None,
    )
    started = time.perf_counter()
    await launcher.start()
    warm_ms = (time.perf_counter() - started) * 1e3
    try:
        await time_starts(launcher, 2)  # warm the page cache
        ready_ms, first_run_ms = await time_starts(launcher, starts)
        (idle, idle_zygote), (loaded, loaded_zygote) = await measure_memory(
            launcher, kernels
        )
    finally:
        await launcher.close()
    print(f"{label}:")
    if use_zygote:
        print(f"  zygote warm-up (once)             {warm_ms:8.0f} ms")
    print(f"  spawn → ready (median)            {ready_ms:8.1f} ms")
    print(f"  spawn → first `x = 1` done        {first_run_ms:8.1f} ms")
    print(
        f"  {kernels} idle kernels, total PSS      {idle / MIB:8.1f} MiB"
        + (f"  (+ zygote {idle_zygote / MIB:.1f} MiB)" if use_zygote else "")
    )
    print(
        f"  … after import pandas+pyplot      {loaded / MIB:8.1f} MiB"
        + (f"  (+ zygote {loaded_zygote / MIB:.1f} MiB)" if use_zygote else "")
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", type=int, default=10)
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--skip-subprocess", action="store_true")
    parser.add_argument(
        "--skip-unconfined",
        action="store_true",
        help="skip the zygote without the sandbox (what confinement costs)",
    )
    args = parser.parse_args()
    await bench(True, True, args.kernels, args.starts)
    if not args.skip_unconfined:
        await bench(True, False, args.kernels, args.starts)
    if not args.skip_subprocess:
        await bench(False, False, args.kernels, min(args.starts, 5))


if __name__ == "__main__":
    asyncio.run(main())
