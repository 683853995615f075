"""GatewayService (GetHealth, GetCurrentUser), health and reflection on the gateway."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from grpc_health.v1 import health_pb2

from reflow.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from services.gateway.clients import Downstreams
from services.gateway.server import build_grpc_server
from services.shared.healthcheck import CHECK_METHOD
from tests.gateway.conftest import rpc_error

if TYPE_CHECKING:
    from services.gateway.auth import Identity
    from tests.gateway.conftest import Gateway

GRPCURL = Path(sys.prefix) / "bin" / "grpcurl"


async def grpcurl(gateway: Gateway, *args: str) -> str:
    """grpcurl's output for ``args`` against the gateway (run without blocking it)."""
    process = await asyncio.create_subprocess_exec(
        str(GRPCURL),
        "-plaintext",
        f"127.0.0.1:{gateway.grpc_port}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


async def test_get_current_user_names_the_dev_token_user(gateway: Gateway) -> None:
    reply = await gateway.gateway.GetCurrentUser(
        gateway_pb2.GetCurrentUserRequest(), metadata=gateway.metadata("alice")
    )

    assert (reply.user, reply.dev_mode) == ("alice", True)


async def test_get_current_user_without_token_is_unauthenticated(
    gateway: Gateway,
) -> None:
    error = await rpc_error(
        gateway.gateway.GetCurrentUser(gateway_pb2.GetCurrentUserRequest())
    )

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_expired_dev_token_is_unauthenticated(gateway: Gateway) -> None:
    expired = gateway.token("alice", ttl_s=-120)

    error = await rpc_error(
        gateway.gateway.GetCurrentUser(
            gateway_pb2.GetCurrentUserRequest(),
            metadata=(("authorization", f"Bearer {expired}"),),
        )
    )

    assert (error.code(), error.details()) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "token has expired",
    )


async def test_get_health_needs_no_token_and_reports_every_service(
    gateway: Gateway,
) -> None:
    reply = await gateway.gateway.GetHealth(gateway_pb2.GetHealthRequest())

    assert reply.status == gateway_pb2.SERVING_STATUS_SERVING
    assert {(c.name, c.status) for c in reply.components} == {
        ("notebook", gateway_pb2.SERVING_STATUS_SERVING),
        ("execution", gateway_pb2.SERVING_STATUS_SERVING),
    }


async def test_get_health_is_not_serving_when_a_service_is_down(
    gateway: Gateway, identity: Identity
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: refuses at once
        dead = f"127.0.0.1:{closed.getsockname()[1]}"
        async with (
            grpc.aio.insecure_channel(
                f"127.0.0.1:{gateway.backends.notebook_port}"
            ) as notebook,
            grpc.aio.insecure_channel(dead) as execution,
        ):
            server, port = build_grpc_server(
                identity,
                gateway.backends.tokens,
                Downstreams(notebook, execution),
                "127.0.0.1:0",
                health_timeout_s=1.0,
            )
            await server.start()
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                reply = await gateway_pb2_grpc.GatewayServiceStub(channel).GetHealth(
                    gateway_pb2.GetHealthRequest()
                )
            await server.stop(None)

    assert reply.status == gateway_pb2.SERVING_STATUS_NOT_SERVING
    assert [(c.name, c.status) for c in reply.components] == [
        ("notebook", gateway_pb2.SERVING_STATUS_SERVING),
        ("execution", gateway_pb2.SERVING_STATUS_UNSPECIFIED),
    ]


async def test_grpc_health_needs_no_token(gateway: Gateway) -> None:
    check = gateway.channel.unary_unary(
        CHECK_METHOD,
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )

    reply = await check(health_pb2.HealthCheckRequest())

    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_public_services(gateway: Gateway) -> None:
    listed = set((await grpcurl(gateway, "list")).split())

    assert listed >= {
        "reflow.notebook.v1.NotebookService",
        "reflow.execution.v1.ExecutionService",
        "reflow.gateway.v1.GatewayService",
        "grpc.health.v1.Health",
    }
    assert "reflow.notebook.v1.NotebookInternalService" not in listed
    assert "reflow.assistant.v1.AssistantService" not in listed


@pytest.mark.parametrize(
    ("symbol", "expected"),
    [
        ("reflow.notebook.v1.NotebookService", "rpc WatchNotebook"),
        ("reflow.execution.v1.ExecutionService", "rpc RunCells"),
        ("reflow.gateway.v1.GatewayService", "rpc GetCurrentUser"),
    ],
)
async def test_reflection_describes_the_public_services(
    gateway: Gateway, symbol: str, expected: str
) -> None:
    described = await grpcurl(gateway, "describe", symbol)

    assert expected in described


async def test_grpcurl_calls_get_health_without_token(gateway: Gateway) -> None:
    answer = await grpcurl(gateway, "reflow.gateway.v1.GatewayService/GetHealth")

    assert "SERVING_STATUS_SERVING" in answer
