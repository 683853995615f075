"""Container health probe: ``python -m services.shared.healthcheck HOST:PORT``.

Exits 0 when the server's ``grpc.health.v1`` service answers SERVING (for the
whole server, or for ``--service NAME``), 1 otherwise, printing why. Used by
docker-compose health checks, so it is a plain blocking client that needs no
token (health is public) and finishes within its timeout.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Final

import grpc
from grpc_health.v1 import health_pb2

if TYPE_CHECKING:
    from collections.abc import Sequence


CHECK_METHOD: Final = "/grpc.health.v1.Health/Check"


def serving_status(
    channel: grpc.Channel, service: str = "", timeout_s: float = 3.0
) -> str:
    """The health status name (``SERVING``, ``NOT_SERVING`` ...) ``channel`` reports."""
    # Built by hand: the typeshed stubs give HealthStub no methods.
    check = channel.unary_unary(
        CHECK_METHOD,
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    response = check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def main(argv: Sequence[str] | None = None) -> int:
    """Probe the address on the command line; 0 if SERVING, 1 otherwise."""
    parser = argparse.ArgumentParser(
        prog="python -m services.shared.healthcheck",
        description="Exit 0 if a gRPC server reports SERVING.",
    )
    parser.add_argument("address", help="HOST:PORT")
    parser.add_argument("--service", default="", help="service name (default: server)")
    parser.add_argument("--timeout-s", type=float, default=3.0)
    args = parser.parse_args(argv)
    with grpc.insecure_channel(args.address) as channel:
        try:
            status = serving_status(channel, args.service, args.timeout_s)
        except grpc.RpcError as error:
            print(
                f"{args.address}: {error.code().name}: {error.details()}",
                file=sys.stderr,
            )
            return 1
    print(f"{args.address}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
