"""``make bench`` (``python -m bench``): DESIGN §9 measured beside Jupyter in one run.

* Our side: the notebook, execution and gateway services run as processes
  (``bench.stack``); a gRPC client (``bench.reflow_side``) talks to the
  gateway with a development user token (``--direct``: to the services
  themselves, with an internal token).
* Jupyter's side: ipykernel kernels through jupyter_client
  (``bench.jupyter_side``), the same code, the same repetitions.
* The timed measures take both sides' samples turn about (``alternate``),
  so whatever else loads the machine loads both alike.
* Memory is taken for each side alone: ours while no Jupyter kernel runs,
  Jupyter's after our services stopped, so no page is shared between them.
* The edit measure runs in this process (``bench.dataflow_edit``) and has an
  absolute target (marimo's ≈1 ms per cell is the reference, not measured).

Prints the table (medians) and writes every sample to
``bench/results/latest.json``. Every process it starts is stopped on the way
out, also on Ctrl-C or SIGTERM. The exit code is 0 whether or not the
targets are met; it is not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import signal
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from bench import jupyter_side, reflow_side, report
from bench.dataflow_edit import measure_edits
from bench.measures import (
    MEASURES,
    PRINT_LINES,
    Figures,
    Repetitions,
    Trial,
    alternate,
)
from bench.stack import running_stack

if TYPE_CHECKING:
    from collections.abc import Callable

RESULTS: Final = Path(__file__).resolve().parent / "results"
SERVICES_LOG: Final = RESULTS / "services.log"
JUPYTER_LOG: Final = RESULTS / "jupyter.log"
OUTPUT_LIMIT_KB: Final = 64 * 1024
"""The execution service's output cap for the run: far above 100,000 lines."""


def progress(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def versions() -> dict[str, str]:
    found = {}
    for package in ("grpcio", "ipykernel", "jupyter_client", "pyzmq", "matplotlib"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def timed_pairs(
    client: reflow_side.Client,
    log: TextIO | None,
    reps: Repetitions,
    ours: Figures,
    theirs: Figures,
) -> list[tuple[str, int, int, list[Trial]]]:
    """(key, warm-up, repetitions, [our trial, Jupyter's trial]) per timed measure."""

    def pair(mine: Trial, jupyter: Callable[[TextIO], Trial]) -> list[Trial]:
        return [mine] if log is None else [mine, jupyter(log)]

    return [
        (
            "round_trip",
            reps.round_trip_warmup,
            reps.round_trip,
            pair(reflow_side.RoundTrip(client, ours.notes), jupyter_side.RoundTrip),
        ),
        (
            "first_run",
            reps.first_run_warmup,
            reps.first_run,
            pair(reflow_side.FirstRun(client), jupyter_side.FirstRun),
        ),
        (
            "print_lines",
            0,
            reps.print_lines,
            pair(reflow_side.PrintLines(client), jupyter_side.PrintLines),
        ),
        (
            "figure",
            0,
            reps.figure,
            pair(
                reflow_side.Figure(client, ours.notes),
                lambda log: jupyter_side.Figure(log, theirs.notes),
            ),
        ),
        (
            "interrupt",
            reps.interrupt_warmup,
            reps.interrupt,
            pair(reflow_side.Interrupt(client), jupyter_side.Interrupt),
        ),
    ]


async def measure(
    args: argparse.Namespace, reps: Repetitions, ours: Figures, theirs: Figures
) -> None:
    """Both sides, timed measures turn about; then each side's memory alone."""
    with contextlib.ExitStack() as stack:
        log: TextIO | None = None
        if not args.skip_jupyter:
            log = stack.enter_context(jupyter_side.jupyter_session(JUPYTER_LOG))
        progress(f"starting notebook, execution and gateway (logs in {SERVICES_LOG})")
        async with running_stack(
            direct=args.direct, output_limit_kb=OUTPUT_LIMIT_KB, log=SERVICES_LOG
        ) as endpoints:
            where = "the services directly" if args.direct else "the gateway"
            progress(f"Reflow through {where} at {endpoints.execution}")
            if log is not None:
                progress(f"Jupyter: ipykernel + jupyter_client (logs in {JUPYTER_LOG})")
            client = reflow_side.Client(endpoints)
            try:
                for key, warmup, count, trials in timed_pairs(
                    client, log, reps, ours, theirs
                ):
                    progress(f"{key}: {count} times each, turn about")
                    samples = await alternate(trials, warmup, count)
                    ours.add(key, samples[0])
                    if log is not None:
                        theirs.add(key, samples[1])
                # Memory alone: no Jupyter kernel is running now.
                progress(f"memory: {reps.kernels} of our kernels")
                idle, loaded = await reflow_side.memory(
                    client, endpoints, reps.kernels, ours.notes
                )
            finally:
                await client.close()
        ours.add("pss_idle", [idle])
        ours.add("pss_loaded", [loaded])
        if log is not None:
            # ... and with our services stopped: no page is shared with theirs.
            progress(f"memory: {reps.kernels} Jupyter kernels")
            idle, loaded = await jupyter_side.memory(reps.kernels, log)
            theirs.add("pss_idle", [idle])
            theirs.add("pss_loaded", [loaded])


def edits(reps: Repetitions, figures: Figures) -> None:
    results = measure_edits(1000, reps.edits)
    figures.notes["edit"] = [asdict(result) for result in results]
    # The slower of the two kinds of edit is the figure held to the target.
    figures.add("edit", [max(result.median_ms for result in results)])


async def run(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    reps = Repetitions.quick() if args.quick else Repetitions()
    started = time.perf_counter()
    ours_figures, theirs_figures = Figures(), Figures()
    await measure(args, reps, ours_figures, theirs_figures)
    theirs = None if args.skip_jupyter else theirs_figures
    progress("edit: a 1,000-cell notebook (in process)")
    edits(reps, ours_figures)
    elapsed_s = time.perf_counter() - started

    rows = report.rows(ours_figures, theirs)
    mode = "direct to the services" if args.direct else "through the gateway"
    print(
        f"DESIGN §9, medians; Reflow {mode}; {platform.python_version()} on "
        f"{platform.machine()} with {_cpus()} CPUs; "
        f"{reps.kernels} kernels for memory, {PRINT_LINES:,} lines"
    )
    print(report.table(rows, kernels=reps.kernels))
    met = sum(1 for row in rows if row.met)
    print(f"{met} of {len(MEASURES)} targets met; {elapsed_s:.0f} s in all")
    context: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "direct" if args.direct else "gateway",
        "quick": args.quick,
        "machine": {
            "cpus": _cpus(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "packages": versions(),
        },
        "repetitions": asdict(reps),
        "duration_s": elapsed_s,
    }
    record = report.record(rows, ours_figures, theirs, context, reps.kernels)
    report.write(args.output, record)
    print(f"results: {args.output}")
    return 0


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--direct",
        action="store_true",
        help="call the notebook and execution services directly, not the gateway",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a few repetitions each (a smoke run)"
    )
    parser.add_argument(
        "--skip-jupyter", action="store_true", help="measure only our side"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="the JSON record (default: bench/results/latest.json, quick.json)",
    )
    args = parser.parse_args()
    if args.output is None:
        args.output = RESULTS / ("quick.json" if args.quick else "latest.json")
    try:
        return asyncio.run(run(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted; every process it started is stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
