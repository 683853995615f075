"""The DESIGN §9 table: our figure, Jupyter's, the ratio, the target, met or not."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from bench.measures import MEASURES, Figures, Measure

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True)
class Row:
    """One measure, both sides' medians, and whether the target is met."""

    measure: Measure
    ours: float | None
    theirs: float | None

    @property
    def ratio(self) -> float | None:
        if self.measure.ratio_target is None or self.ours is None or not self.theirs:
            return None
        return self.ours / self.theirs

    @property
    def met(self) -> bool | None:
        target = self.measure
        if target.absolute_target is not None and self.ours is not None:
            return self.ours <= target.absolute_target
        if target.ratio_target is not None and self.ratio is not None:
            return self.ratio <= target.ratio_target
        return None

    @property
    def target(self) -> str:
        measure = self.measure
        if measure.absolute_target is not None:
            return f"≤ {format_value(measure.absolute_target, measure.unit)}"
        return f"≤ {measure.ratio_target:g}"


def rows(ours: Figures, theirs: Figures | None) -> list[Row]:
    return [
        Row(m, ours.median(m.key), theirs.median(m.key) if theirs else None)
        for m in MEASURES
    ]


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    if value >= 100:
        return f"{value:.0f} ms"
    if value >= 1:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def format_ratio(ratio: float | None, target: float | None) -> str:
    """Two decimals, or three where two would hide which side of the target."""
    if ratio is None:
        return "—"
    shown = f"{ratio:.2f}"
    if target is not None and float(shown) == target and ratio != target:
        return f"{ratio:.3f}"
    return shown


def table(table_rows: list[Row], kernels: int) -> str:
    """The rows as text, one per line under a header; ``kernels`` for the labels."""
    header = (
        f"{'measure':<40} {'reflow':<11} {'jupyter':<11} {'ratio':<7} {'target':<8} met"
    )
    lines = [header]
    for row in table_rows:
        unit = row.measure.unit
        ratio = format_ratio(row.ratio, row.measure.ratio_target)
        met = {True: "yes", False: "no", None: "—"}[row.met]
        lines.append(
            f"{row.measure.label.format(kernels=kernels):<40} "
            f"{format_value(row.ours, unit):<11} "
            f"{format_value(row.theirs, unit):<11} {ratio:<7} {row.target:<8} {met}"
        )
    return "\n".join(lines)


def record(
    table_rows: list[Row],
    ours: Figures,
    theirs: Figures | None,
    context: dict[str, Any],
    kernels: int,
) -> dict[str, Any]:
    """Everything worth keeping of a run, JSON-ready."""
    measures = []
    for row in table_rows:
        key = row.measure.key
        measures.append(
            {
                **asdict(row.measure),
                "label": row.measure.label.format(kernels=kernels),
                "reflow_median": row.ours,
                "jupyter_median": row.theirs,
                "ratio": row.ratio,
                "met": row.met,
                "reflow_samples": ours.samples.get(key, []),
                "jupyter_samples": theirs.samples.get(key, []) if theirs else [],
            }
        )
    return {
        **context,
        "measures": measures,
        "notes": {"reflow": ours.notes, "jupyter": theirs.notes if theirs else {}},
    }


def write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
