"""Prometheus metrics of every process of the stack, scraped before and after real work.

The module's fixture does the work once, as a user would through Envoy: a
notebook whose cell prints, run over REST; an edit with a stale revision
(the conflict every replica race also ends in); a WebSocket that signs in.
Each test then checks that one service's counter moved. The scrapes go over
HTTP to the ports ``make run`` gives each process (``*_METRICS_PORT``) and
are parsed by prometheus-client's own parser.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

if TYPE_CHECKING:
    from tests.stack.stack_process import RunningStack

TIMEOUT_S: Final = 60.0
PROCESSES: Final = {
    "notebook": ("NOTEBOOK_METRICS_PORT", "/metrics"),
    "execution": ("EXECUTION_METRICS_PORT", "/metrics"),
    "gateway": ("GATEWAY_METRICS_PORT", "/metrics"),
    "assistant": ("ASSISTANT_METRICS_PORT", "/metrics"),
    "envoy": ("REFLOW_ENVOY_METRICS_PORT", "/stats/prometheus"),
}
RUN_CELLS: Final = {
    "grpc_service": "reflow.execution.v1.ExecutionService",
    "grpc_method": "RunCells",
    "grpc_code": "OK",
}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metrics_url(stack: RunningStack, process: str) -> str:
    variable, path = PROCESSES[process]
    return f"http://127.0.0.1:{stack.env[variable]}{path}"


def scrape(stack: RunningStack, process: str) -> Samples:
    """Every sample ``process`` serves, by name and labels."""
    response = httpx.get(metrics_url(stack, process), timeout=TIMEOUT_S)
    response.raise_for_status()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples that carry ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


@dataclass(frozen=True)
class Observed:
    """Each process's samples before and after the module's work."""

    before: dict[str, Samples]
    after: dict[str, Samples]

    def moved(self, process: str, name: str, **labels: str) -> float:
        after = value(self.after[process], name, **labels)
        return after - value(self.before[process], name, **labels)


def do_the_work(stack: RunningStack, token: str) -> None:
    """A printed run, a stale edit and a signed-in WebSocket, through Envoy."""
    headers = {"authorization": f"Bearer {token}"}
    base = f"{stack.base_url}/api/v1"
    with httpx.Client(base_url=base, headers=headers, timeout=TIMEOUT_S) as api:
        notebook = api.post("/notebooks", json={"name": "metrics"}).json()["notebook"]
        cell = api.post(
            f"/notebooks/{notebook['id']}/cells", json={"code": "print('x' * 100)"}
        ).json()
        with api.stream("POST", f"/notebooks/{notebook['id']}:run", json={}) as run:
            lines = [line for line in run.iter_lines() if line]
        assert "runFinished" in json.loads(lines[-1])["event"]
        stale = api.put(
            f"/notebooks/{notebook['id']}/cells/{cell['cell']['id']}",
            json={"code": "y = 2", "expectedRevision": "1"},
        )
        assert stale.status_code == 409
    asyncio.run(sign_in_on_a_socket(stack, notebook["id"], token))


async def sign_in_on_a_socket(
    stack: RunningStack, notebook_id: str, token: str
) -> None:
    url = f"ws://127.0.0.1:{stack.http_port}/ws/notebooks/{notebook_id}"
    async with connect(url, open_timeout=TIMEOUT_S) as socket:
        await socket.send(json.dumps({"type": "auth", "token": token}))
        first = json.loads(await asyncio.wait_for(socket.recv(), TIMEOUT_S))
        assert first["type"] == "notebook_event"


def scrape_once_the_run_is_counted(
    stack: RunningStack, before: dict[str, Samples]
) -> dict[str, Samples]:
    """Every process's samples, once the execution service has counted the run.

    A stream's RPC is counted when its handler returns, which can be a moment
    after the client read the last message.
    """
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        after = {process: scrape(stack, process) for process in PROCESSES}
        counted = value(after["execution"], "grpc_server_handled_total", **RUN_CELLS)
        if counted > value(
            before["execution"], "grpc_server_handled_total", **RUN_CELLS
        ):
            return after
        if time.monotonic() > deadline:
            pytest.fail("the execution service never counted the RunCells")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def observed(stack: RunningStack) -> Observed:
    token = stack.token("metrics-user")
    before = {process: scrape(stack, process) for process in PROCESSES}

    do_the_work(stack, token)

    return Observed(before, scrape_once_the_run_is_counted(stack, before))


def test_run_cells_is_counted_ok_by_the_gateway_and_the_execution_service(
    observed: Observed,
) -> None:
    assert observed.moved("gateway", "grpc_server_handled_total", **RUN_CELLS) >= 1
    assert observed.moved("execution", "grpc_server_handled_total", **RUN_CELLS) >= 1
    assert (
        observed.moved("execution", "grpc_server_handling_seconds_count", **RUN_CELLS)
        >= 1
    )


def test_a_new_notebooks_kernel_is_counted_started_and_live(observed: Observed) -> None:
    assert observed.moved("execution", "reflow_kernels_started_total") >= 1
    assert value(observed.after["execution"], "reflow_kernels_live") >= 1


def test_the_cells_duration_is_observed(observed: Observed) -> None:
    moved = observed.moved(
        "execution", "reflow_cell_duration_seconds_count", status="success"
    )

    assert moved >= 1


def test_the_printed_output_is_counted_in_bytes(observed: Observed) -> None:
    assert observed.moved("execution", "reflow_output_bytes_total", kind="stream") > 100


def test_store_operations_are_timed(observed: Observed) -> None:
    moved = observed.moved(
        "notebook", "reflow_store_operation_seconds_count", operation="put"
    )

    assert moved >= 1


def test_the_stale_edit_is_counted_as_a_conflict(observed: Observed) -> None:
    moved = observed.moved(
        "notebook", "reflow_revision_conflicts_total", stage="expected_revision"
    )

    assert moved == 1


def test_the_websocket_connection_is_counted(observed: Observed) -> None:
    moved = observed.moved(
        "gateway", "reflow_websocket_connections_accepted_total", outcome="ok"
    )

    assert moved == 1


def test_the_assistant_serves_its_rpc_metrics(observed: Observed) -> None:
    assert any(
        name.startswith("grpc_server_handled")
        for name, _ in observed.after["assistant"]
    )


def test_envoys_stats_show_the_requests_it_sent_the_gateway(
    observed: Observed,
) -> None:
    moved = observed.moved(
        "envoy", "envoy_cluster_upstream_rq_total", envoy_cluster_name="gateway_grpc"
    )

    assert moved >= 4


def test_envoys_metrics_listener_serves_nothing_else_of_its_admin(
    stack: RunningStack,
) -> None:
    port = stack.env["REFLOW_ENVOY_METRICS_PORT"]

    stats = httpx.get(f"http://127.0.0.1:{port}/stats", timeout=TIMEOUT_S)
    quit_ = httpx.post(f"http://127.0.0.1:{port}/quitquitquit", timeout=TIMEOUT_S)
    posted = httpx.post(f"http://127.0.0.1:{port}/stats/prometheus", timeout=TIMEOUT_S)

    assert (stats.status_code, quit_.status_code, posted.status_code) == (404, 404, 404)
