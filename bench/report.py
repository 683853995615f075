"""The DESIGN §9 table: our figure, Jupyter's, the ratio, the target, met or not.

With ``--with-marimo`` a marimo column (and our ratio to it) joins the rows
it measures. UpdateCell under load has a table of its own: our p50, p99
and ops/s beside the do-nothing service's, with the ratios its targets name
(p99 / p50, our ops/s / the do-nothing service's).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from bench.measures import (
    LOAD_MEASURES,
    MEASURES,
    Figures,
    LoadMeasure,
    Measure,
    percentile,
)

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True)
class Row:
    """One measure, both sides' medians, and whether the target is met."""

    measure: Measure
    ours: float | None
    theirs: float | None
    marimo: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.measure.ratio_target is None or self.ours is None or not self.theirs:
            return None
        return self.ours / self.theirs

    @property
    def marimo_ratio(self) -> float | None:
        if self.ours is None or not self.marimo:
            return None
        return self.ours / self.marimo

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


def rows(
    ours: Figures, theirs: Figures | None, marimo: Figures | None = None
) -> list[Row]:
    return [
        Row(
            m,
            ours.median(m.key),
            theirs.median(m.key) if theirs else None,
            marimo.median(m.key) if marimo else None,
        )
        for m in MEASURES
    ]


@dataclass(frozen=True)
class Load:
    """One side of a load measure: every call's latency, each round's ops/s."""

    latencies_ms: list[float]
    rounds_ops_per_s: list[float]

    @classmethod
    def of(cls, figures: Figures, key: str) -> Load | None:
        latencies = figures.samples.get(key)
        rounds = figures.samples.get(ops_key(key))
        return cls(latencies, rounds) if latencies and rounds else None

    @property
    def p50(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies_ms, 99)

    @property
    def ops_per_s(self) -> float:
        return statistics.median(self.rounds_ops_per_s)

    def record(self, prefix: str) -> dict[str, Any]:
        return {
            f"{prefix}_p50": self.p50,
            f"{prefix}_p99": self.p99,
            f"{prefix}_ops_per_s": self.ops_per_s,
            f"{prefix}_round_ops_per_s": self.rounds_ops_per_s,
        }


def ops_key(key: str) -> str:
    """Where a load measure's per-round throughput is kept beside its latencies."""
    return f"{key}_ops_per_s"


@dataclass(frozen=True)
class LoadRow:
    """UpdateCell with N clients, beside the do-nothing service, and the targets."""

    measure: LoadMeasure
    ours: Load | None
    floor: Load | None

    @property
    def tail_ratio(self) -> float | None:
        return None if self.ours is None else self.ours.p99 / self.ours.p50

    @property
    def ops_ratio(self) -> float | None:
        if self.ours is None or self.floor is None:
            return None
        return self.ours.ops_per_s / self.floor.ops_per_s

    @property
    def met(self) -> bool | None:
        if self.ops_ratio is None or self.tail_ratio is None:
            return None
        tail_target = self.measure.p99_over_p50_target
        tail_met = tail_target is None or self.tail_ratio <= tail_target
        return tail_met and self.ops_ratio >= self.measure.ops_ratio_target

    @property
    def target(self) -> str:
        ops = f"ops ≥ {self.measure.ops_ratio_target:g}"
        tail = self.measure.p99_over_p50_target
        return ops if tail is None else f"p99/p50 ≤ {tail:g}, {ops}"


def load_rows(ours: Figures, floor: Figures) -> list[LoadRow]:
    return [
        LoadRow(m, Load.of(ours, m.key), Load.of(floor, m.key)) for m in LOAD_MEASURES
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


MET: dict[bool | None, str] = {True: "yes", False: "no", None: "—"}


def table(table_rows: list[Row], kernels: int) -> str:
    """The rows as text, one per line under a header; ``kernels`` for the labels."""
    with_marimo = any(row.marimo is not None for row in table_rows)
    marimo_header = f" {'marimo':<11} {'÷marimo':<8}" if with_marimo else ""
    header = (
        f"{'measure':<40} {'reflow':<11} {'jupyter':<11} {'ratio':<7} {'target':<8} "
        f"met{marimo_header}"
    )
    lines = [header.rstrip()]
    for row in table_rows:
        unit = row.measure.unit
        ratio = format_ratio(row.ratio, row.measure.ratio_target)
        line = (
            f"{row.measure.label.format(kernels=kernels):<40} "
            f"{format_value(row.ours, unit):<11} "
            f"{format_value(row.theirs, unit):<11} {ratio:<7} {row.target:<8} "
            f"{MET[row.met]:<3}"
        )
        if with_marimo:
            marimo_ratio = format_ratio(row.marimo_ratio, None)
            line += f" {format_value(row.marimo, unit):<11} {marimo_ratio:<8}"
        lines.append(line.rstrip())
    return "\n".join(lines)


def load_table(table_rows: list[LoadRow], floor_label: str) -> str:
    """UpdateCell's latency and throughput beside ``floor_label``'s."""
    lines = [
        f"{'measure':<24} {'p50':<8} {'p99':<8} {'p99/p50':<8} {'ops/s':<7} "
        f"{'idle p50':<9} {'idle p99':<9} {'idle ops/s':<10} {'ops ratio':<10} "
        f"{'target':<25} met"
    ]
    for row in table_rows:
        ours, floor = row.ours, row.floor
        lines.append(
            f"{row.measure.label:<24} "
            f"{format_value(ours.p50 if ours else None, 'ms'):<8} "
            f"{format_value(ours.p99 if ours else None, 'ms'):<8} "
            f"{format_ratio(row.tail_ratio, row.measure.p99_over_p50_target):<8} "
            f"{format_rate(ours):<7} "
            f"{format_value(floor.p50 if floor else None, 'ms'):<9} "
            f"{format_value(floor.p99 if floor else None, 'ms'):<9} "
            f"{format_rate(floor):<10} "
            f"{format_ratio(row.ops_ratio, row.measure.ops_ratio_target):<10} "
            f"{row.target:<25} {MET[row.met]}"
        )
    lines.append(f"idle: {floor_label}")
    return "\n".join(lines)


def format_rate(load: Load | None) -> str:
    return "—" if load is None else f"{load.ops_per_s:.0f}"


@dataclass(frozen=True)
class Sides:
    """Every side's figures: ours, Jupyter's, marimo's, the do-nothing service's."""

    ours: Figures
    theirs: Figures | None
    marimo: Figures | None
    floor: Figures


def record(
    table_rows: list[Row],
    table_load_rows: list[LoadRow],
    sides: Sides,
    context: dict[str, Any],
    kernels: int,
) -> dict[str, Any]:
    """Everything worth keeping of a run, JSON-ready."""
    ours, theirs, marimo = sides.ours, sides.theirs, sides.marimo
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
                "marimo_median": row.marimo,
                "marimo_ratio": row.marimo_ratio,
                "marimo_samples": marimo.samples.get(key, []) if marimo else [],
            }
        )
    for load in table_load_rows:
        measures.append(_load_record(load))
    return {
        **context,
        "measures": measures,
        "notes": {
            "reflow": ours.notes,
            "jupyter": theirs.notes if theirs else {},
            "marimo": marimo.notes if marimo else {},
        },
    }


def _load_record(row: LoadRow) -> dict[str, Any]:
    """A load row in the shape of the others, plus what only it has.

    Its ratios point both ways (p99 / p50 at most, ops/s ratio at least),
    so the shared ``ratio_target``/``ratio`` stay empty; ``met`` holds both.
    """
    ours, floor = row.ours, row.floor
    return {
        "key": row.measure.key,
        "label": row.measure.label,
        "unit": "ms",
        "ratio_target": None,
        "absolute_target": None,
        "reflow_median": ours.p50 if ours else None,
        "jupyter_median": None,
        "ratio": None,
        "met": row.met,
        "reflow_samples": ours.latencies_ms if ours else [],
        "jupyter_samples": [],
        "clients": row.measure.clients,
        "p99_over_p50": row.tail_ratio,
        "p99_over_p50_target": row.measure.p99_over_p50_target,
        "ops_ratio": row.ops_ratio,
        "ops_ratio_target": row.measure.ops_ratio_target,
        **(ours.record("reflow") if ours else {}),
        "idle_samples": floor.latencies_ms if floor else [],
        **(floor.record("idle") if floor else {}),
    }


def write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
