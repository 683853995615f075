"""Tests for services.shared.healthcheck, the container health probe."""

from __future__ import annotations

import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc
import grpc_testing
from grpc_health.v1 import health_pb2

from services.shared.healthcheck import serving_status
from tests.shared.echo import Echo, running_server

HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"]


def answer_check(status: int) -> str:
    """serving_status() over an in-memory channel whose server answers ``status``."""
    channel = grpc_testing.channel([HEALTH], grpc_testing.strict_real_time())
    with ThreadPoolExecutor(max_workers=1) as pool:
        result = pool.submit(serving_status, channel, "", 5.0)
        _, _, rpc = channel.take_unary_unary(HEALTH.methods_by_name["Check"])
        rpc.terminate(
            health_pb2.HealthCheckResponse(status=status), (), grpc.StatusCode.OK, ""
        )
        return result.result(timeout=5)


async def probe(*args: str) -> int:
    """Exit code of ``python -m services.shared.healthcheck ARGS``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.shared.healthcheck",
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(process.wait(), timeout=30)


def test_serving_status_names_the_reported_status() -> None:
    assert answer_check(health_pb2.HealthCheckResponse.NOT_SERVING) == "NOT_SERVING"


async def test_probe_exits_zero_for_a_serving_server() -> None:
    async with running_server([Echo().add_to]) as (_, port):
        code = await probe(f"127.0.0.1:{port}")

    assert code == 0


async def test_probe_exits_one_for_an_unknown_service() -> None:
    async with running_server([Echo().add_to]) as (_, port):
        code = await probe(f"127.0.0.1:{port}", "--service", "no.such.Service")

    assert code == 1


async def test_probe_exits_one_when_nothing_listens() -> None:
    async with running_server([Echo().add_to]) as (server, port):
        await server.stop(None)

    code = await probe(f"127.0.0.1:{port}", "--timeout-s", "0.5")

    assert code == 1
