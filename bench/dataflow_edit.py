"""One edit in a large notebook: re-analysis plus the run plan, timed.

DESIGN.md §9 asks that an edit in a 1,000-cell notebook costs at most 1 ms
for re-analysis and planning. This builds such a notebook (each cell writes
one or two names and reads one to three names of earlier cells, picked at
random), then repeatedly edits a cell near the top and times:

    analyse_python(code) → graph.set_cell(...) →
    graph.topological_order({cell} | graph.descendants({cell}))

Two kinds of edit are measured: one that keeps the cell's names (the usual
keystroke: edges stay as they are) and one that changes what the cell reads
(edges are relinked). Since the edited cell is near the top, the plan covers
most of the notebook.

Run: `python bench/dataflow_edit.py [--cells N] [--repetitions N] [--chain]`.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from dataclasses import dataclass

from services.shared.dataflow import CellId, DependencyGraph, analyse_python


@dataclass(frozen=True)
class Result:
    label: str
    plan_size: int
    median_ms: float
    p95_ms: float


def cell_code(index: int, reads: list[str], writes: int) -> str:
    lines = [f"v{index}_0 = max({', '.join(reads)}) + {index}"]
    if writes == 2:
        lines.append(f"v{index}_1 = [v{index}_0 * k for k in range(3)]")
    return "\n".join(lines)


def build_notebook(cells: int, rng: random.Random, *, chain: bool) -> DependencyGraph:
    graph = DependencyGraph()
    names: list[str] = []
    for index in range(cells):
        if chain:
            reads = [f"v{index - 1}_0"] if index else ["0"]
        else:
            reads = rng.sample(names, min(len(names), rng.randint(1, 3))) or ["0"]
        writes = rng.randint(1, 2)
        graph.set_cell(
            CellId(f"c{index}"), analyse_python(cell_code(index, reads, writes))
        )
        names.extend(f"v{index}_{k}" for k in range(writes))
    return graph


def time_edits(
    graph: DependencyGraph, cell_id: CellId, codes: list[str], repetitions: int
) -> tuple[list[float], int]:
    timings: list[float] = []
    plan_size = 0
    for repetition in range(repetitions):
        code = codes[repetition % len(codes)]
        start = time.perf_counter_ns()
        graph.set_cell(cell_id, analyse_python(code))
        plan = graph.topological_order({cell_id} | graph.descendants({cell_id}))
        timings.append((time.perf_counter_ns() - start) / 1e6)
        plan_size = len(plan)
    return timings, plan_size


def measure(
    label: str, graph: DependencyGraph, codes: list[str], repetitions: int
) -> Result:
    cell_id = CellId("c5")
    time_edits(graph, cell_id, codes, 20)  # warm up
    timings, plan_size = time_edits(graph, cell_id, codes, repetitions)
    p95 = statistics.quantiles(timings, n=20)[-1]
    return Result(label, plan_size, statistics.median(timings), p95)


def measure_edits(
    cells: int = 1000, repetitions: int = 200, seed: int = 1, *, chain: bool = False
) -> list[Result]:
    """Both kinds of edit of cell c5 in a notebook of ``cells`` cells."""
    graph = build_notebook(cells, random.Random(seed), chain=chain)
    same_names = [
        cell_code(5, ["v1_0", "v2_0"], 2).replace("+ 5", f"+ {n}") for n in (6, 7)
    ]
    new_reads = [cell_code(5, ["v1_0", "v2_0"], 2), cell_code(5, ["v3_0", "v4_0"], 2)]
    return [
        measure("edit keeping names", graph, same_names, repetitions),
        measure("edit changing reads", graph, new_reads, repetitions),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--repetitions", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--chain", action="store_true", help="each cell reads the one above"
    )
    args = parser.parse_args()

    results = measure_edits(args.cells, args.repetitions, args.seed, chain=args.chain)
    shape = "chain" if args.chain else "random DAG"
    print(f"{args.cells} cells ({shape}), {args.repetitions} edits of cell c5 each")
    for result in results:
        print(
            f"{result.label:<22} plan {result.plan_size:>4} cells  "
            f"median {result.median_ms:.3f} ms  p95 {result.p95_ms:.3f} ms"
        )


if __name__ == "__main__":
    main()
