"""What both sides run and how often: the DESIGN §9 measures, defined once.

Each side (``bench.reflow_side``, ``bench.jupyter_side``) offers a ``Trial``
per timed measure, running the same code. ``alternate`` takes the two
trials' samples turn about (ours, theirs, theirs, ours, ...), so load from
anything else on the machine falls on both sides alike. The samples end up
in each side's ``Figures``, keyed as in ``MEASURES``; the report
(``bench.report``) puts the two side by side.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from bench.kernel_start import pss_bytes

MIB: Final = 1024 * 1024
TIMEOUT_S: Final = 120.0
"""No single step of the benchmark may take longer than this."""

X_CODE: Final = "x = 1"
CHAIN_LENGTH: Final = 10
PRINT_LINES: Final = 100_000
PRINT_CODE: Final = f"for i in range({PRINT_LINES}):\n    print(i)"
PRINT_WARMUP_CODE: Final = "for j in range(1000):\n    print(j)"
PLOT_SETUP_CODE: Final = "import matplotlib.pyplot as plt"
PLOT_CODE: Final = "fig, ax = plt.subplots()\nlines = ax.plot([1, 3, 2, 4])"
LOOP_CODE: Final = "while True:\n    pass"
IMPORT_CODE: Final = "import pandas, matplotlib"
INTERRUPT_AFTER_S: Final = 0.2
"""How long the loop runs after the kernel is seen busy, before the interrupt."""

PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"

Unit = Literal["ms", "MiB"]


def chain_codes(first: int = 1) -> list[str]:
    """Ten dependent one-line cells: ``a0 = first``, ``a1 = a0 + 1``, ..."""
    return [f"a0 = {first}"] + [f"a{i} = a{i - 1} + 1" for i in range(1, CHAIN_LENGTH)]


@dataclass(frozen=True)
class Measure:
    """One row of the DESIGN §9 table."""

    key: str
    label: str
    unit: Unit
    # ours / Jupyter's must be at most this; None for an absolute target.
    ratio_target: float | None = None
    # ours must be at most this (in `unit`); only without a ratio target.
    absolute_target: float | None = None


MEASURES: Final = (
    Measure("round_trip", "x = 1 round trip", "ms", ratio_target=0.5),
    Measure(
        "round_trip_envoy",
        "x = 1 (min_revision) vs blocking client",
        "ms",
        ratio_target=0.8,
    ),
    Measure(
        "chain_10",
        f"edit + re-run a chain of {CHAIN_LENGTH} cells",
        "ms",
        ratio_target=0.5,
    ),
    Measure("first_run", "new notebook's first run", "ms", ratio_target=0.1),
    Measure("print_lines", "100,000 printed lines delivered", "ms", ratio_target=0.3),
    Measure("figure", "matplotlib figure as PNG", "ms", ratio_target=1.0),
    Measure("interrupt", "interrupt → error delivered", "ms", ratio_target=1.0),
    Measure("pss_idle", "{kernels} idle kernels, total PSS", "MiB", ratio_target=0.4),
    Measure("pss_loaded", "… after import pandas, matplotlib", "MiB", ratio_target=0.4),
    Measure("edit", "edit in 1,000 cells → analysis+plan", "ms", absolute_target=1.0),
)


@dataclass(frozen=True)
class Repetitions:
    """How many times each measure is taken (the medians are reported)."""

    round_trip_warmup: int = 20
    round_trip: int = 100
    first_run_warmup: int = 1
    first_run: int = 8
    print_lines: int = 3
    figure: int = 10
    # The first interrupt of a kernel pays for loading its traceback code.
    interrupt_warmup: int = 1
    interrupt: int = 5
    kernels: int = 10
    edits: int = 200
    round_trip_envoy_warmup: int = 20
    round_trip_envoy: int = 200
    chain_warmup: int = 5
    chain: int = 50
    # UpdateCell under load: rounds taken turn about with the idle service,
    # each round every client doing `updates_per_client` calls.
    update_rounds: int = 6
    updates_per_client_1: int = 200
    updates_per_client_30: int = 20

    @classmethod
    def quick(cls) -> Repetitions:
        """A smoke run: every measure once or a few times (not for the record)."""
        return cls(
            round_trip_warmup=5,
            round_trip=20,
            first_run_warmup=1,
            first_run=2,
            print_lines=1,
            figure=3,
            interrupt_warmup=1,
            interrupt=2,
            kernels=3,
            edits=50,
            round_trip_envoy_warmup=5,
            round_trip_envoy=20,
            chain_warmup=1,
            chain=5,
            update_rounds=2,
            updates_per_client_1=50,
            updates_per_client_30=5,
        )


@dataclass(frozen=True)
class LoadMeasure:
    """UpdateCell with ``clients`` concurrent clients, beside the idle service."""

    key: str
    label: str
    clients: int
    # ours ops/s over the idle service's must be at least this.
    ops_ratio_target: float = 0.3
    # our p99 over our p50 must be at most this; None: not held to one.
    p99_over_p50_target: float | None = None


LOAD_MEASURES: Final = (
    LoadMeasure("update_cell_1", "UpdateCell, 1 client", 1),
    LoadMeasure(
        "update_cell_30", "UpdateCell, 30 clients", 30, p99_over_p50_target=2.0
    ),
)


@dataclass
class Figures:
    """One side's samples per measure key, and notes worth keeping with them."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    notes: dict[str, object] = field(default_factory=dict)

    def add(self, key: str, values: list[float]) -> None:
        self.samples[key] = values

    def median(self, key: str) -> float | None:
        values = self.samples.get(key)
        return statistics.median(values) if values else None


class Trial(Protocol):
    """One side of a timed measure: set up once, then timed over and over."""

    async def prepare(self) -> None:
        """Set up (a kernel, a notebook, warm-up cells); not timed."""

    async def once(self) -> float:
        """Take the measure once; milliseconds."""

    async def finish(self) -> None:
        """Release what ``prepare`` set up; safe after a failed ``prepare``."""


async def alternate(
    trials: list[Trial], warmup: int, repetitions: int
) -> list[list[float]]:
    """Each trial's samples, taken turn about (ABBA), after ``warmup`` untimed."""
    samples: list[list[float]] = [[] for _ in trials]
    try:
        for trial in trials:
            await trial.prepare()
        for _ in range(warmup):
            for trial in trials:
                await trial.once()
        for repetition in range(repetitions):
            order = list(enumerate(trials))
            for index, trial in order if repetition % 2 == 0 else order[::-1]:
                samples[index].append(await trial.once())
    finally:
        for trial in trials:
            await trial.finish()
    return samples


def percentile(values: list[float], percent: int) -> float:
    """The ``percent``-th percentile (inclusive method, as numpy's default)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


class BenchError(Exception):
    """Something ran but did not do what the measure needs (a wrong result)."""


class Stopwatch:
    """Milliseconds since it was made (``time.perf_counter``)."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    def ms(self) -> float:
        return (time.perf_counter() - self._start) * 1e3


def total_pss_mib(pids: list[int]) -> float:
    """The PSS of ``pids`` and their descendants, each once, read together
    (shared pages split among whoever maps them now)."""
    return pss_bytes(*pids) / MIB


def zygote_pss_mib(pid: int) -> float:
    """The zygote's own PSS (its descendants are the kernels)."""
    return pss_bytes(pid, descendants=False) / MIB


def expected_print_text(lines: int = PRINT_LINES) -> str:
    return "".join(f"{i}\n" for i in range(lines))


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header; raises BenchError if it is no PNG."""
    if not data.startswith(PNG_MAGIC) or len(data) < 24:
        raise BenchError("the figure is not a PNG")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
