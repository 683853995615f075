"""``make soak``: a bounded load run through Envoy, measured, not judged.

``python -m bench.soak --clients N --minutes M`` starts the whole stack
(``python -m services.stack``: Envoy in front, dev issuer, local files) on
free loopback ports in a temporary directory, then runs N clients for M
minutes. Each client is its own user and works on its own notebooks, over
gRPC through Envoy: create a notebook, add a cell, edit it, run it (reading
the run's events to the end), read the notebook back, delete it; again until
time is up. Then it prints

* throughput (operations per second) and p50/p99 latency per operation;
* errors by status code;
* each service's resident memory (RSS) at the start and at the end;
* the kernels left over: what ListKernels reports for the clients after
  their notebooks are gone, and how many processes run under the execution
  service (the zygote and kernels) at the start and at the end.

The stack is stopped (and anything it left killed) on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import grpc

from reflow.execution.v1 import execution_pb2, execution_pb2_grpc
from reflow.notebook.v1 import notebook_pb2, notebook_pb2_grpc

if TYPE_CHECKING:
    from collections.abc import Awaitable, Iterator, Sequence

ROOT: Final = Path(__file__).resolve().parents[1]
READY_LINE: Final = "Reflow is running"
STARTED: Final = re.compile(r"started (?P<name>\w+) \(pid (?P<pid>\d+)\)")
PORTS: Final = (
    "REFLOW_HTTP_PORT",
    "NOTEBOOK_PORT",
    "EXECUTION_PORT",
    "ASSISTANT_PORT",
    "GATEWAY_GRPC_PORT",
    "GATEWAY_HTTP_PORT",
)
START_TIMEOUT_S: Final = 120.0
CALL_TIMEOUT_S: Final = 60.0
Metadata = tuple[tuple[str, str], ...]
T = TypeVar("T")


@dataclass
class Tally:
    """What the clients measured."""

    latencies_s: dict[str, list[float]] = field(
        default_factory=lambda: defaultdict(list)
    )
    errors: Counter[str] = field(default_factory=Counter)

    async def timed(self, op: str, call: Awaitable[T]) -> T | None:
        """Await ``call``, recording its latency or its error (then None)."""
        started = time.perf_counter()
        try:
            result = await call
        except grpc.aio.AioRpcError as error:
            self.errors[f"{op}: {error.code().name}"] += 1
            return None
        self.latencies_s[op].append(time.perf_counter() - started)
        return result


async def drain(call: grpc.aio.UnaryStreamCall[Any, Any]) -> int:
    """Read a stream to its end; how many messages it had."""
    count = 0
    async for _ in call:
        count += 1
    return count


async def client(
    target: str, metadata: Metadata, deadline: float, tally: Tally, index: int
) -> None:
    """One user's loop: create, add, edit, run, read, delete, until ``deadline``."""
    timeout = CALL_TIMEOUT_S
    async with grpc.aio.insecure_channel(target) as channel:
        notebooks = notebook_pb2_grpc.NotebookServiceStub(channel)
        execution = execution_pb2_grpc.ExecutionServiceStub(channel)
        while time.monotonic() < deadline:
            created = await tally.timed(
                "CreateNotebook",
                notebooks.CreateNotebook(
                    notebook_pb2.CreateNotebookRequest(name=f"soak {index}"),
                    metadata=metadata,
                    timeout=timeout,
                ),
            )
            if created is None:
                continue
            notebook_id = created.notebook.id
            cell = await tally.timed(
                "CreateCell",
                notebooks.CreateCell(
                    notebook_pb2.CreateCellRequest(notebook_id=notebook_id, code="x=1"),
                    metadata=metadata,
                    timeout=timeout,
                ),
            )
            if cell is not None:
                await tally.timed(
                    "UpdateCell",
                    notebooks.UpdateCell(
                        notebook_pb2.UpdateCellRequest(
                            notebook_id=notebook_id,
                            cell_id=cell.cell.id,
                            code=f"x = {index}\nprint(x * 2)",
                        ),
                        metadata=metadata,
                        timeout=timeout,
                    ),
                )
                await tally.timed(
                    "RunCells",
                    drain(
                        execution.RunCells(
                            execution_pb2.RunCellsRequest(notebook_id=notebook_id),
                            metadata=metadata,
                            timeout=timeout,
                        )
                    ),
                )
            await tally.timed(
                "GetNotebook",
                notebooks.GetNotebook(
                    notebook_pb2.GetNotebookRequest(notebook_id=notebook_id),
                    metadata=metadata,
                    timeout=timeout,
                ),
            )
            await tally.timed(
                "DeleteNotebook",
                notebooks.DeleteNotebook(
                    notebook_pb2.DeleteNotebookRequest(notebook_id=notebook_id),
                    metadata=metadata,
                    timeout=timeout,
                ),
            )


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@contextlib.contextmanager
def running_stack(data_dir: Path) -> Iterator[tuple[dict[str, str], dict[str, int]]]:
    """The stack on free ports; its environment and each service's pid."""
    env = dict(os.environ)
    env.update(zip(PORTS, map(str, free_ports(len(PORTS))), strict=True))
    env["REFLOW_DATA_DIR"] = str(data_dir)
    env["REFLOW_INTERNAL_SECRET"] = secrets.token_urlsafe(48)
    env["PYTHONUNBUFFERED"] = "1"
    for name in ("GATEWAY_JWKS_URL", "CLERK_FRONTEND_API", "OPENAI_API_KEY"):
        env.pop(name, None)
    log = (data_dir / "stack.log").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "services.stack"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        pids = wait_until_ready(data_dir / "stack.log", process)
        yield env, pids
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def wait_until_ready(log: Path, process: subprocess.Popen[bytes]) -> dict[str, int]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if READY_LINE in text:
            return {m["name"]: int(m["pid"]) for m in STARTED.finditer(text)}
        if process.poll() is not None:
            raise SystemExit(f"the stack exited:\n{text[-3000:]}")
        time.sleep(0.2)  # polling a log file: there is nothing to await
    raise SystemExit("the stack did not become ready in time")


def rss_mib(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match[1]) / 1024 if match else float("nan")


def descendants(root: int) -> int:
    """How many live processes run under ``root`` (the zygote, kernels and
    their children, for the execution service)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    found = {root}
    grew = True
    while grew:
        new = {pid for pid, parent in parents.items() if parent in found} - found
        found |= new
        grew = bool(new)
    return len(found) - 1


def token_for(env: dict[str, str], data_dir: Path, user: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "services.gateway.devtoken", user],
        env={**env, "GATEWAY_DATA_DIR": str(data_dir / "gateway")},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout.strip()


async def listed_kernels(target: str, tokens: Sequence[str]) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        execution = execution_pb2_grpc.ExecutionServiceStub(channel)
        total = 0
        for token in tokens:
            reply = await execution.ListKernels(
                execution_pb2.ListKernelsRequest(),
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=CALL_TIMEOUT_S,
            )
            total += len(reply.kernels)
        return total


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report(
    tally: Tally,
    elapsed_s: float,
    rss_before: dict[str, float],
    rss_after: dict[str, float],
    kernels: tuple[int, int, int],
) -> str:
    lines = []
    total = sum(len(v) for v in tally.latencies_s.values())
    lines.append(
        f"{total} operations in {elapsed_s:.1f} s: {total / elapsed_s:.0f} ops/s"
    )
    lines.append(f"{'operation':<16}{'count':>8}{'p50 ms':>10}{'p99 ms':>10}")
    for op, values in sorted(tally.latencies_s.items()):
        lines.append(
            f"{op:<16}{len(values):>8}"
            f"{statistics.median(values) * 1000:>10.1f}"
            f"{percentile(values, 0.99) * 1000:>10.1f}"
        )
    errors = sum(tally.errors.values())
    lines.append(f"errors: {errors}")
    lines.extend(f"  {name}: {count}" for name, count in tally.errors.most_common())
    lines.append("RSS (MiB)        start      end")
    for name in sorted(rss_before):
        lines.append(f"  {name:<12}{rss_before[name]:>9.1f}{rss_after[name]:>9.1f}")
    lines.append(
        f"kernels left over: {kernels[0]} listed by ListKernels; processes under "
        f"the execution service: {kernels[1]} at the start, {kernels[2]} at the end"
    )
    return "\n".join(lines)


async def soak(clients: int, minutes: float) -> str:
    with tempfile.TemporaryDirectory(prefix="reflow-soak-") as tmp:
        data_dir = Path(tmp)
        with running_stack(data_dir) as (env, pids):
            target = f"127.0.0.1:{env['REFLOW_HTTP_PORT']}"
            tokens = [token_for(env, data_dir, f"soak-{i}") for i in range(clients)]
            rss_before = {name: rss_mib(pid) for name, pid in pids.items()}
            processes_before = descendants(pids["execution"])
            tally = Tally()
            started = time.monotonic()
            deadline = started + minutes * 60
            await asyncio.gather(
                *(
                    client(
                        target,
                        (("authorization", f"Bearer {token}"),),
                        deadline,
                        tally,
                        index,
                    )
                    for index, token in enumerate(tokens)
                )
            )
            elapsed = time.monotonic() - started
            rss_after = {name: rss_mib(pid) for name, pid in pids.items()}
            kernels = (
                await listed_kernels(target, tokens),
                processes_before,
                descendants(pids["execution"]),
            )
            return report(tally, elapsed, rss_before, rss_after, kernels)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--clients", type=int, default=10, help="users at once")
    parser.add_argument("--minutes", type=float, default=1.0, help="how long")
    args = parser.parse_args(argv)
    print(f"soak: {args.clients} clients for {args.minutes:g} min through Envoy")
    print(asyncio.run(soak(args.clients, args.minutes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
