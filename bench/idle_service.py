"""A gRPC service that does nothing: the floor the UpdateCell throughput is held to.

``python -m bench.idle_service PORT`` serves one unary method, ``METHOD``,
whose handler returns an empty reply without reading the request, plus
``grpc.health.v1`` so the benchmark can wait for it like for any service.
It runs on grpc.aio like our services, in a process of its own, and
``bench.stack`` routes it through the same Envoy, so what it measures is
the cost of Envoy, HTTP/2 and a Python gRPC server, with no work behind it.
The method is registered as a generic handler on raw bytes: a contract
would only add serialisation the floor should not pay.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Final

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

SERVICE: Final = "bench.idle.v1.IdleService"
METHOD: Final = f"/{SERVICE}/Nothing"


async def _nothing(
    _request: bytes, _context: grpc.aio.ServicerContext[bytes, bytes]
) -> bytes:
    return b""


async def serve(port: int) -> None:
    server = grpc.aio.server()
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(
        _nothing
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Nothing": handler}),)
    )
    health_servicer = health_aio.HealthServicer()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(grace=1.0)


def main() -> int:
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        print("usage: python -m bench.idle_service PORT", file=sys.stderr)
        return 2
    asyncio.run(serve(int(sys.argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
