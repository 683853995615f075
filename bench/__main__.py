"""``make bench`` (``python -m bench``): DESIGN §9 measured beside Jupyter in one run.

* Our side: the notebook, execution and gateway services and Envoy in
  front of them run as processes (``bench.stack``); a gRPC client
  (``bench.reflow_side``) talks to Envoy with a development user token, as
  users do (``--gateway``: to the gateway itself; ``--direct``: to the
  services themselves, with an internal token).
* Jupyter's side: ipykernel kernels through jupyter_client
  (``bench.jupyter_side``), the same code, the same repetitions.
* ``--with-marimo``: marimo's server and kernel as a third column
  (``bench.marimo_side``) for the ``x = 1`` round trip and the chain.
* The timed measures take every side's samples turn about (``alternate``),
  so whatever else loads the machine loads them alike.
* UpdateCell under 1 and 30 concurrent clients (``bench.load``), in rounds
  turn about with a do-nothing gRPC service behind the same Envoy.
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

from bench import jupyter_side, marimo_side, reflow_side, report
from bench.dataflow_edit import measure_edits
from bench.load import IdleLoad, UpdateCellLoad
from bench.measures import (
    LOAD_MEASURES,
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

    from bench.stack import Endpoints

RESULTS: Final = Path(__file__).resolve().parent / "results"
SERVICES_LOG: Final = RESULTS / "services.log"
ENVOY_LOG: Final = SERVICES_LOG.with_name("envoy.log")
JUPYTER_LOG: Final = RESULTS / "jupyter.log"
MARIMO_LOG: Final = RESULTS / "marimo.log"
IDLE_LABEL: Final[dict[str, str]] = {
    "envoy": "a do-nothing grpc.aio service (bench.idle_service) behind the same Envoy",
    "gateway": "a do-nothing grpc.aio service (bench.idle_service), called directly",
    "direct": "a do-nothing grpc.aio service (bench.idle_service), called directly",
}
ROUTES: Final[dict[str, str]] = {
    "envoy": "through Envoy",
    "gateway": "through the gateway",
    "direct": "direct to the services",
}
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


Sides = dict[str, Trial]
"""Each side's trial of one measure, by the side's name in ``report.Sides``."""


def timed_trials(
    client: reflow_side.Client,
    log: TextIO | None,
    marimo_url: str | None,
    reps: Repetitions,
    sides: report.Sides,
) -> list[tuple[str, int, int, Sides]]:
    """(key, warm-up, repetitions, every side's trial) per timed measure."""
    ours, theirs = sides.ours, sides.theirs or Figures()

    def pair(
        mine: Trial,
        jupyter: Callable[[TextIO], Trial],
        marimo: Callable[[str], Trial] | None = None,
    ) -> Sides:
        trials: Sides = {"ours": mine}
        if log is not None:
            trials["theirs"] = jupyter(log)
        if marimo is not None and marimo_url is not None:
            trials["marimo"] = marimo(marimo_url)
        return trials

    return [
        (
            "round_trip",
            reps.round_trip_warmup,
            reps.round_trip,
            pair(reflow_side.RoundTrip(client, ours.notes), jupyter_side.RoundTrip),
        ),
        (
            "round_trip_envoy",
            reps.round_trip_envoy_warmup,
            reps.round_trip_envoy,
            pair(
                reflow_side.RoundTripAtRevision(client),
                jupyter_side.BlockingRoundTrip,
                marimo_side.RoundTrip,
            ),
        ),
        (
            "chain_10",
            reps.chain_warmup,
            reps.chain,
            pair(
                reflow_side.Chain(client),
                jupyter_side.BlockingChain,
                marimo_side.Chain,
            ),
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


async def timed(
    client: reflow_side.Client,
    log: TextIO | None,
    with_marimo: bool,
    reps: Repetitions,
    sides: report.Sides,
) -> None:
    """The timed measures, every side turn about; marimo's server stopped after."""
    async with contextlib.AsyncExitStack() as stack:
        marimo_url: str | None = None
        if with_marimo:
            progress(f"starting marimo (log in {MARIMO_LOG})")
            marimo_url = await stack.enter_async_context(
                marimo_side.marimo_server(MARIMO_LOG)
            )
        figures = {"ours": sides.ours, "theirs": sides.theirs, "marimo": sides.marimo}
        for key, warmup, count, trials in timed_trials(
            client, log, marimo_url, reps, sides
        ):
            progress(f"{key}: {count} times each, turn about ({', '.join(trials)})")
            samples = await alternate(list(trials.values()), warmup, count)
            for side, values in zip(trials, samples, strict=True):
                side_figures = figures[side]
                if side_figures is not None:
                    side_figures.add(key, values)


async def under_load(
    client: reflow_side.Client,
    endpoints: Endpoints,
    reps: Repetitions,
    sides: report.Sides,
) -> None:
    """UpdateCell with 1 and 30 clients, rounds turn about with the idle service."""
    for measure in LOAD_MEASURES:
        per_client = (
            reps.updates_per_client_1
            if measure.clients == 1
            else reps.updates_per_client_30
        )
        progress(
            f"{measure.key}: {reps.update_rounds} rounds of {measure.clients} × "
            f"{per_client} calls, turn about with the idle service"
        )
        ours = UpdateCellLoad(client, endpoints, measure.clients, per_client)
        floor = IdleLoad(endpoints, measure.clients, per_client)
        rounds = await alternate([ours, floor], 0, reps.update_rounds)
        sides.ours.add(measure.key, ours.latencies_ms)
        sides.ours.add(report.ops_key(measure.key), rounds[0])
        sides.floor.add(measure.key, floor.latencies_ms)
        sides.floor.add(report.ops_key(measure.key), rounds[1])


async def measure(
    args: argparse.Namespace, reps: Repetitions, sides: report.Sides
) -> None:
    """Every side, timed measures turn about; then each side's memory alone."""
    ours, theirs = sides.ours, sides.theirs
    with contextlib.ExitStack() as stack:
        log: TextIO | None = None
        if theirs is not None:
            log = stack.enter_context(jupyter_side.jupyter_session(JUPYTER_LOG))
        progress(
            "starting notebook, execution, gateway and Envoy "
            f"(logs in {SERVICES_LOG}, Envoy's in {ENVOY_LOG})"
        )
        async with running_stack(
            route=args.route, output_limit_kb=OUTPUT_LIMIT_KB, log=SERVICES_LOG
        ) as endpoints:
            progress(f"Reflow {ROUTES[args.route]} at {endpoints.execution}")
            if log is not None:
                progress(f"Jupyter: ipykernel + jupyter_client (logs in {JUPYTER_LOG})")
            client = reflow_side.Client(endpoints)
            try:
                await timed(client, log, args.with_marimo, reps, sides)
                await under_load(client, endpoints, reps, sides)
                # Memory alone: no Jupyter or marimo kernel is running now.
                progress(f"memory: {reps.kernels} of our kernels")
                idle, loaded = await reflow_side.memory(
                    client, endpoints, reps.kernels, ours.notes
                )
            finally:
                await client.close()
        ours.add("pss_idle", [idle])
        ours.add("pss_loaded", [loaded])
        if theirs is not None and log is not None:
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
    sides = report.Sides(
        ours=Figures(),
        theirs=None if args.skip_jupyter else Figures(),
        marimo=Figures() if args.with_marimo else None,
        floor=Figures(),
    )
    packages = versions()
    if args.with_marimo:
        packages["marimo"] = marimo_side.marimo_version()
    await measure(args, reps, sides)
    progress("edit: a 1,000-cell notebook (in process)")
    edits(reps, sides.ours)
    elapsed_s = time.perf_counter() - started

    rows = report.rows(sides.ours, sides.theirs, sides.marimo)
    load_rows = report.load_rows(sides.ours, sides.floor)
    print(
        f"DESIGN §9, medians; Reflow {ROUTES[args.route]}; "
        f"{platform.python_version()} on "
        f"{platform.machine()} with {_cpus()} CPUs; "
        f"{reps.kernels} kernels for memory, {PRINT_LINES:,} lines"
    )
    print(report.table(rows, kernels=reps.kernels))
    print()
    print(report.load_table(load_rows, IDLE_LABEL[args.route]))
    met = sum(1 for row in rows if row.met) + sum(1 for r in load_rows if r.met)
    targets = len(MEASURES) + len(LOAD_MEASURES)
    print(f"{met} of {targets} targets met; {elapsed_s:.0f} s in all")
    context: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": args.route,
        "quick": args.quick,
        "machine": {
            "cpus": _cpus(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "packages": packages,
        },
        "repetitions": asdict(reps),
        "duration_s": elapsed_s,
    }
    record = report.record(rows, load_rows, sides, context, reps.kernels)
    report.write(args.output, record)
    print(f"results: {args.output}")
    return 0


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.splitlines()[0]
    )
    route = parser.add_mutually_exclusive_group()
    route.add_argument(
        "--direct",
        dest="route",
        action="store_const",
        const="direct",
        help="call the notebook and execution services directly, not Envoy",
    )
    route.add_argument(
        "--gateway",
        dest="route",
        action="store_const",
        const="gateway",
        help="call the gateway directly, not Envoy in front of it",
    )
    parser.set_defaults(route="envoy")
    parser.add_argument(
        "--with-marimo",
        action="store_true",
        help="marimo as a third column (installed into bench/.marimo-venv first)",
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
