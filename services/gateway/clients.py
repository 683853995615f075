"""The services behind the gateway: one channel each, and the calls the gateway makes.

``Downstreams`` holds one channel per service (opened once, at startup) and
knows which public service each serves. ``UserCalls`` makes the WebSocket
bridge's calls for one user about one notebook: every call carries a freshly
minted internal token naming the user (never the user's own JWT) and the
``x-reflow-notebook-id`` routing header. ``check_health`` asks a service's
``grpc.health.v1`` whether it is serving.
"""

from __future__ import annotations

from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import grpc
from grpc_health.v1 import health_pb2

from reflow.assistant.v1 import assistant_pb2
from reflow.execution.v1 import execution_pb2
from reflow.notebook.v1 import notebook_pb2
from services.shared.grpc_client import ROUTING_HEADER, bearer_metadata, open_channel
from services.shared.interceptor import REQUEST_ID_HEADER, new_request_id

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
    from google.protobuf.message import Message

    from services.gateway.config import Settings
    from services.shared.auth import InternalTokens

NOTEBOOK_SERVICE: Final = notebook_pb2.DESCRIPTOR.services_by_name["NotebookService"]
EXECUTION_SERVICE: Final = execution_pb2.DESCRIPTOR.services_by_name["ExecutionService"]
ASSISTANT_SERVICE: Final = assistant_pb2.DESCRIPTOR.services_by_name["AssistantService"]

SERVICE_NAMES: Final = {
    NOTEBOOK_SERVICE.full_name: "notebook",
    EXECUTION_SERVICE.full_name: "execution",
    ASSISTANT_SERVICE.full_name: "assistant",
}

HEALTH_CHECK: Final = "/grpc.health.v1.Health/Check"


@dataclass(frozen=True)
class Downstream:
    """One service behind the gateway: its short name, public service, channel."""

    name: str
    service: ServiceDescriptor
    channel: grpc.aio.Channel


@dataclass(frozen=True)
class Downstreams:
    """The notebook, execution and (when configured) assistant services."""

    notebook: grpc.aio.Channel
    execution: grpc.aio.Channel
    assistant: grpc.aio.Channel | None = None

    def all(self) -> list[Downstream]:
        """Every configured downstream, in a stable order."""
        found = [
            Downstream("notebook", NOTEBOOK_SERVICE, self.notebook),
            Downstream("execution", EXECUTION_SERVICE, self.execution),
        ]
        if self.assistant is not None:
            found.append(Downstream("assistant", ASSISTANT_SERVICE, self.assistant))
        return found


@asynccontextmanager
async def open_downstreams(settings: Settings) -> AsyncIterator[Downstreams]:
    """Channels to the services ``settings`` name, closed on exit."""
    async with AsyncExitStack() as stack:
        notebook = open_channel(settings.notebook_service_addr)
        stack.push_async_callback(notebook.close)
        execution = open_channel(settings.execution_service_addr)
        stack.push_async_callback(execution.close)
        assistant = None
        if settings.assistant_service_addr is not None:
            assistant = open_channel(settings.assistant_service_addr)
            stack.push_async_callback(assistant.close)
        yield Downstreams(notebook, execution, assistant)


async def check_health(channel: grpc.aio.Channel, timeout_s: float) -> int:
    """The service's ``HealthCheckResponse.ServingStatus`` (UNKNOWN if it fails)."""
    check = channel.unary_unary(
        HEALTH_CHECK,
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    try:
        response = await check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
    except grpc.aio.AioRpcError:
        return health_pb2.HealthCheckResponse.UNKNOWN
    status: int = response.status
    return status


def method_path(method: MethodDescriptor) -> str:
    """``/reflow.notebook.v1.NotebookService/CreateCell``."""
    return f"/{method.containing_service.full_name}/{method.name}"


class UserCalls:
    """Calls about one notebook, made for one user, on the services' channels."""

    def __init__(
        self,
        downstreams: Downstreams,
        tokens: InternalTokens,
        user: str,
        notebook_id: str,
    ) -> None:
        self._downstreams = downstreams
        self._tokens = tokens
        self.user = user
        self.notebook_id = notebook_id

    def unary(
        self, method: MethodDescriptor, request: Message, response_type: type[Message]
    ) -> grpc.aio.UnaryUnaryCall[Any, Any]:
        """Start a unary call of ``method``; await the result for the response."""
        call = self._channel(method).unary_unary(
            method_path(method),
            request_serializer=_serialize,
            response_deserializer=response_type.FromString,
        )
        return call(request, metadata=self._metadata())

    def stream(
        self, method: MethodDescriptor, request: Message, response_type: type[Message]
    ) -> grpc.aio.UnaryStreamCall[Any, Any]:
        """Start a server-streaming call of ``method``; iterate it for responses."""
        call = self._channel(method).unary_stream(
            method_path(method),
            request_serializer=_serialize,
            response_deserializer=response_type.FromString,
        )
        return call(request, metadata=self._metadata())

    def watch_notebook(self) -> grpc.aio.UnaryStreamCall[Any, Any]:
        """WatchNotebook from the start (a snapshot first)."""
        return self.stream(
            NOTEBOOK_SERVICE.methods_by_name["WatchNotebook"],
            notebook_pb2.WatchNotebookRequest(notebook_id=self.notebook_id),
            notebook_pb2.WatchNotebookResponse,
        )

    def watch_execution(self) -> grpc.aio.UnaryStreamCall[Any, Any]:
        """WatchExecution: every run's events from now on."""
        return self.stream(
            EXECUTION_SERVICE.methods_by_name["WatchExecution"],
            execution_pb2.WatchExecutionRequest(notebook_id=self.notebook_id),
            execution_pb2.WatchExecutionResponse,
        )

    def serves(self, method: MethodDescriptor) -> bool:
        """Whether a service behind the gateway serves ``method``."""
        service = method.containing_service.full_name
        return any(d.service.full_name == service for d in self._downstreams.all())

    def service_name(self, method: MethodDescriptor) -> str:
        """The short name (``execution``) of the service that serves ``method``."""
        return SERVICE_NAMES.get(method.containing_service.full_name, "downstream")

    def _channel(self, method: MethodDescriptor) -> grpc.aio.Channel:
        for downstream in self._downstreams.all():
            if downstream.service.full_name == method.containing_service.full_name:
                return downstream.channel
        raise ValueError(f"no service behind the gateway serves {method.full_name}")

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        # Minted per call: cheap (HS256), a long-lived socket never sends an
        # expired one, and each call carries a request id its errors quote.
        request_id = new_request_id()
        token = self._tokens.token_for(self.user, request_id)
        return (
            *bearer_metadata(token),
            (ROUTING_HEADER, self.notebook_id),
            (REQUEST_ID_HEADER, request_id),
        )


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()
