"""The notebook service's Prometheus metrics: its store and its conflicts.

``reflow_store_operation_seconds`` times every store call by backend,
operation and outcome (``store/measured.py`` wraps whichever backend runs).
``reflow_revision_conflicts_total`` counts conditional writes refused, by
``stage``: ``expected_revision`` when the caller's revision was stale (the
manager's check), ``store`` when the store refused the write because another
replica wrote in between. Both answer ABORTED.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Histogram

STORE_SECONDS: Final = Histogram(
    "reflow_store_operation_seconds",
    "Time the notebook store took per operation.",
    ("backend", "operation", "outcome"),
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
             0.1, 0.25, 0.5, 1, 2.5, 5),
)  # fmt: skip
REVISION_CONFLICTS: Final = Counter(
    "reflow_revision_conflicts",
    "Conditional writes refused because the notebook's revision had moved on.",
    ("stage",),
)
