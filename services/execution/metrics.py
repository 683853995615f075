"""The execution service's Prometheus metrics: kernels, runs, cells, output.

Counted where each thing happens: kernels in ``lifecycle.py`` (started,
died, stopped) and ``sessions.py`` (evicted), runs in ``session.py`` (queued
requests, runs going on), cells and output in ``runner.py``.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

KERNELS_LIVE: Final = Gauge(
    "reflow_kernels_live", "Kernel processes this replica holds right now."
)
KERNELS_STARTED: Final = Counter("reflow_kernels_started", "Kernels started.")
KERNELS_DIED: Final = Counter(
    "reflow_kernels_died",
    "Kernels that died on their own (crashed, killed, out of memory).",
)
KERNELS_EVICTED: Final = Counter(
    "reflow_kernels_evicted",
    "Kernels stopped to reclaim them: idle too long, or to make room at a limit.",
    ("reason",),
)
RUNS_QUEUED: Final = Gauge(
    "reflow_runs_queued", "Run requests waiting behind their notebook's run."
)
RUNS_RUNNING: Final = Gauge("reflow_runs_running", "Runs going on right now.")
CELL_SECONDS: Final = Histogram(
    "reflow_cell_duration_seconds",
    "How long cells ran in their kernel, by final status.",
    ("status",),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
             10, 30, 60, 300, 1800),
)  # fmt: skip
OUTPUT_BYTES: Final = Counter(
    "reflow_output_bytes",
    "Output kernels sent (serialized bytes): stdout/stderr chunks, rich outputs.",
    ("kind",),
)
