"""Server wiring every service shares: error mapping, health, reflection, serving.

``create_server`` builds a ``grpc.aio`` server the same way for every service:
the tracing instrumentation when spans are exported (``services.shared.tracing``),
then the ``RpcGuard`` (request ids, errors as statuses, requests decoded
inside that mapping, and the internal token when a verifier is given), then
any extra interceptors; the service's servicers; the standard ``grpc.health.v1``
health service (SERVING for "" and each named service); server reflection, so
``grpcurl list``/``describe`` work. It binds and returns ``(server, port)``
without starting, so tests can bind port 0. ``serve`` starts a server and
stops it gracefully on SIGTERM or SIGINT.

The guard (``services.shared.interceptor``) is the one place domain errors
become statuses, through the one table in ``services.shared.status``: a
``ServiceError`` becomes its category's code with a ``google.rpc.Status``
carrying an ``ErrorInfo`` (and a ``BadRequest`` for ``InvalidArgument``);
anything else is a bug, answered with INTERNAL "internal error" while the
traceback goes to the log, never to the client.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import signal
import weakref
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Mapping,
    Sequence,
)
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

import grpc
from google.protobuf.descriptor_pb2 import FileDescriptorProto, FileDescriptorSet
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection, reflection_pb2

from services.shared import tracing
from services.shared.interceptor import RpcGuard

if TYPE_CHECKING:
    from services.shared.auth import TokenVerifier

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024
DESCRIPTOR_SET_NAME: Final = "reflow.binpb"

SERVER_OPTIONS: Final = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Clients ping idle connections every 30 s (grpc_client.open_channel);
    # accept pings that often, or the server would answer with GOAWAY.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    # Linux's SO_REUSEPORT would let a second server bind a busy port and
    # silently share its traffic; a port clash must fail loudly instead.
    ("grpc.so_reuseport", 0),
)

# serve() needs the health servicer create_server registered, and the
# (server, port) return shape leaves no room for it.
_health_servicers: weakref.WeakKeyDictionary[
    grpc.aio.Server, health_aio.HealthServicer
] = weakref.WeakKeyDictionary()

Behavior = Callable[..., Any]
AioContext = grpc.aio.ServicerContext[Any, Any]


def create_server(
    add_servicers: Sequence[Callable[[grpc.aio.Server], None]],
    address: str,
    service_names: Sequence[str],
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    token_verifier: TokenVerifier | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Build a server with error mapping, auth, health and reflection; bind it.

    ``add_servicers`` are callables like ``lambda server:
    notebook_pb2_grpc.add_NotebookServiceServicer_to_server(servicer, server)``;
    ``service_names`` are the full names they serve
    (``reflow.notebook.v1.NotebookService``), for health and reflection.
    Returns the unstarted server and the bound port (the real one for port 0).
    """
    # The tracing instrumentation (when spans are exported) goes outermost,
    # so the guard's own log lines belong to the RPC's span.
    chain: list[grpc.aio.ServerInterceptor] = tracing.server_interceptors()
    chain.append(RpcGuard(token_verifier))
    chain.extend(interceptors)
    server = grpc.aio.server(interceptors=chain, options=SERVER_OPTIONS)
    for add in add_servicers:
        add(server)
    health = _health_servicer(service_names)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    _health_servicers[server] = health
    _add_reflection(server, service_names)
    # Raises RuntimeError naming the address when it cannot bind.
    port = server.add_insecure_port(address)
    return server, port


def _add_reflection(server: grpc.aio.Server, service_names: Sequence[str]) -> None:
    names = (
        *service_names,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    documented = _documented_files(_descriptor_set_path())
    if documented:
        DocumentedReflection(names, documented).add_to(server)
    else:
        reflection.enable_server_reflection(names, server)


class DocumentedReflection:
    """Server reflection whose file descriptors keep the .proto comments.

    Generated ``_pb2`` modules carry descriptors without source info, and
    the upb runtime drops it even from descriptors that had it, so stock
    reflection gives ``grpcurl describe`` no comments. This answers with the
    stock servicer, then swaps in the same files as ``make protos`` wrote
    them to its descriptor set, comments included.
    """

    def __init__(self, service_names: Sequence[str], documented: Mapping[str, bytes]):
        self._stock = reflection.aio.ReflectionServicer(service_names)
        self._documented = documented

    async def server_reflection_info(
        self,
        requests: AsyncIterable[reflection_pb2.ServerReflectionRequest],
        context: AioContext,
    ) -> AsyncIterator[reflection_pb2.ServerReflectionResponse]:
        """The ServerReflectionInfo RPC."""
        # Typeshed calls the stock method a coroutine; it is an async generator.
        responses = cast(
            "AsyncIterator[reflection_pb2.ServerReflectionResponse]",
            self._stock.ServerReflectionInfo(requests, context),
        )
        async for response in responses:
            files = response.file_descriptor_response.file_descriptor_proto
            for index, serialized in enumerate(files):
                name = FileDescriptorProto.FromString(serialized).name
                files[index] = self._documented.get(name, serialized)
            yield response

    def add_to(self, server: grpc.aio.Server) -> None:
        """Register as grpc.reflection.v1alpha.ServerReflection on ``server``."""
        handler = grpc.stream_stream_rpc_method_handler(
            self.server_reflection_info,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    reflection.SERVICE_NAME, {"ServerReflectionInfo": handler}
                ),
            )
        )


def _descriptor_set_path() -> Path | None:
    """Where ``make protos`` writes its descriptor set: beside ``reflow/``."""
    spec = importlib.util.find_spec("reflow")
    for location in (spec and spec.submodule_search_locations) or ():
        candidate = Path(location).parent / DESCRIPTOR_SET_NAME
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def _documented_files(path: Path | None) -> dict[str, bytes]:
    """The set's files with source info, by name; empty without a set."""
    if path is None:
        logger.debug("no %s found: reflection serves no comments", DESCRIPTOR_SET_NAME)
        return {}
    files = FileDescriptorSet.FromString(path.read_bytes()).file
    return {file.name: file.SerializeToString() for file in files}


def _health_servicer(service_names: Sequence[str]) -> health_aio.HealthServicer:
    health = health_aio.HealthServicer()
    # The async servicer only offers an async setter. Before the server starts
    # nobody can be watching, which is the only case where set() would need
    # to await, so writing the initial statuses directly is equivalent.
    for name in service_names:
        health._server_status[name] = health_pb2.HealthCheckResponse.SERVING  # type: ignore[attr-defined]
    return health


async def serve(server: grpc.aio.Server, grace_s: float = 5.0) -> None:
    """Start ``server`` and run until SIGTERM/SIGINT, then drain it for ``grace_s``.

    On the signal, health turns NOT_SERVING (so load balancers stop sending
    new RPCs) and in-flight RPCs get ``grace_s`` seconds to finish. Also
    returns if the server is stopped some other way, and stops the server
    if the caller is cancelled.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    await server.start()
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    stopped = asyncio.ensure_future(stop.wait())
    # Shielded: cancelling a wait_for_termination() task would cancel the
    # server's own shutdown future, and stop() would then fail.
    terminated = asyncio.shield(server.wait_for_termination())
    try:
        await asyncio.wait((stopped, terminated), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        stopped.cancel()
        terminated.cancel()
        if stop.is_set():
            logger.info("stopping: draining RPCs for up to %.1f s", grace_s)
        health = _health_servicers.get(server)
        if health is not None:
            await health.enter_graceful_shutdown()
        await server.stop(grace_s)
