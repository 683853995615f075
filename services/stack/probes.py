"""Readiness probes: is a started process serving yet?

Three kinds cover the stack: the standard gRPC health check (every Reflow
service registers ``grpc.health.v1``), an HTTP GET that must answer 200 (the
gateway's ``/healthz``, Envoy's admin ``/ready``, and ``/healthz`` through
Envoy to prove the route works), each polled until it passes or a deadline.
The HTTP client is a few lines over asyncio streams, so the runner needs
nothing beyond what every service already installs.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

import grpc
from grpc_health.v1 import health_pb2

if TYPE_CHECKING:
    from pathlib import Path

CHECK_METHOD: Final = "/grpc.health.v1.Health/Check"
POLL_INTERVAL_S: Final = 0.2
ATTEMPT_TIMEOUT_S: Final = 2.0


class Probe(Protocol):
    """One readiness check; ``check`` is a single attempt."""

    def describe(self) -> str: ...

    async def check(self) -> bool: ...


@dataclass(frozen=True)
class GrpcHealthProbe:
    """``grpc.health.v1.Health/Check`` for the whole server answers SERVING."""

    address: str

    def describe(self) -> str:
        return f"gRPC health at {self.address}"

    async def check(self) -> bool:
        async with grpc.aio.insecure_channel(self.address) as channel:
            # Built by hand: the typeshed stubs give HealthStub no methods.
            check = channel.unary_unary(
                CHECK_METHOD,
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )
            try:
                reply = await check(
                    health_pb2.HealthCheckRequest(), timeout=ATTEMPT_TIMEOUT_S
                )
            except grpc.aio.AioRpcError:
                return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@dataclass(frozen=True)
class HttpProbe:
    """``GET http://host:port/path`` (or over a unix socket) answers 200."""

    host: str
    port: int
    path: str
    socket_path: str = ""

    @classmethod
    def unix(cls, socket_path: Path, path: str) -> HttpProbe:
        """The probe for ``GET path`` over the unix socket at ``socket_path``."""
        return cls("localhost", 0, path, str(socket_path))

    def describe(self) -> str:
        if self.socket_path:
            return f"GET {self.path} on {self.socket_path}"
        return f"GET http://{self.host}:{self.port}{self.path}"

    async def check(self) -> bool:
        try:
            status = await asyncio.wait_for(self._status(), timeout=ATTEMPT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError, IndexError):
            return False
        return status == 200

    async def _status(self) -> int:
        if self.socket_path:
            reader, writer = await asyncio.open_unix_connection(self.socket_path)
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            request = (
                f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(request.encode())
            await writer.drain()
            status_line = await reader.readline()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        # "HTTP/1.1 200 OK"
        return int(status_line.split()[1])


async def wait_until_ready(probe: Probe, timeout_s: float) -> bool:
    """Poll ``probe`` until it passes (True) or ``timeout_s`` runs out (False)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        if await probe.check():
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(POLL_INTERVAL_S)
