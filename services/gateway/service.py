"""The gateway's own gRPC API: the stack's health and who the caller is."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from grpc_health.v1 import health_pb2

from reflow.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from services.gateway.clients import check_health

if TYPE_CHECKING:
    import grpc

    from services.gateway.auth import Identity
    from services.gateway.clients import Downstreams

    Context = grpc.aio.ServicerContext[object, object]

_SERVING_STATUS: Final = {
    health_pb2.HealthCheckResponse.SERVING: gateway_pb2.SERVING_STATUS_SERVING,
    health_pb2.HealthCheckResponse.NOT_SERVING: gateway_pb2.SERVING_STATUS_NOT_SERVING,
}


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    """GetHealth (no token needed) and GetCurrentUser."""

    def __init__(
        self, identity: Identity, downstreams: Downstreams, health_timeout_s: float
    ) -> None:
        self._identity = identity
        self._downstreams = downstreams
        self._health_timeout_s = health_timeout_s

    async def GetHealth(
        self, request: gateway_pb2.GetHealthRequest, context: Context
    ) -> gateway_pb2.GetHealthResponse:
        downstreams = self._downstreams.all()
        statuses = await asyncio.gather(
            *(check_health(d.channel, self._health_timeout_s) for d in downstreams)
        )
        components = [
            gateway_pb2.ComponentHealth(
                name=downstream.name,
                status=_SERVING_STATUS.get(
                    status, gateway_pb2.SERVING_STATUS_UNSPECIFIED
                ),
            )
            for downstream, status in zip(downstreams, statuses, strict=True)
        ]
        serving = all(
            c.status == gateway_pb2.SERVING_STATUS_SERVING for c in components
        )
        return gateway_pb2.GetHealthResponse(
            status=gateway_pb2.SERVING_STATUS_SERVING
            if serving
            else gateway_pb2.SERVING_STATUS_NOT_SERVING,
            components=components,
        )

    async def GetCurrentUser(
        self, request: gateway_pb2.GetCurrentUserRequest, context: Context
    ) -> gateway_pb2.GetCurrentUserResponse:
        user = await self._identity.authenticator.authenticate_metadata(
            context.invocation_metadata()
        )
        return gateway_pb2.GetCurrentUserResponse(
            user=user, dev_mode=self._identity.dev_mode
        )
