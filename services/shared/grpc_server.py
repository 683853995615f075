"""Server wiring every service shares: error mapping, health, reflection, serving.

``create_server`` builds a ``grpc.aio`` server the same way for every service:
the ``ErrorInterceptor`` outermost (so it also maps what the handlers that
inner interceptors wrap raise, auth rejections included), then the
``AuthInterceptor`` when a token verifier is given, then any extra
interceptors; the service's servicers; the standard ``grpc.health.v1``
health service (SERVING for "" and each named service); server reflection, so
``grpcurl list``/``describe`` work. It binds and returns ``(server, port)``
without starting, so tests can bind port 0. ``serve`` starts a server and
stops it gracefully on SIGTERM or SIGINT.

The error mapping is the one place domain errors become statuses: a
``ServiceError`` becomes its category's code with a ``google.rpc.Status``
carrying an ``ErrorInfo`` (and a ``BadRequest`` for ``InvalidArgument``);
anything else is a bug, answered with INTERNAL "internal error" while the
traceback goes to the log, never to the client.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import inspect
import logging
import signal
import weakref
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from pathlib import Path
from typing import Any, Final, NoReturn, cast

import grpc
from google.protobuf import any_pb2
from google.protobuf.descriptor_pb2 import FileDescriptorProto, FileDescriptorSet
from google.rpc.error_details_pb2 import BadRequest, ErrorInfo, RetryInfo
from google.rpc.status_pb2 import Status
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection, reflection_pb2
from grpc_status import rpc_status

from services.shared.auth import AuthInterceptor, TokenVerifier, replace_behavior
from services.shared.errors import (
    Aborted,
    AlreadyExists,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ServiceError,
    Unauthenticated,
    Unavailable,
)

logger = logging.getLogger(__name__)

ERROR_DOMAIN: Final = "reflow"
MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024
DESCRIPTOR_SET_NAME: Final = "reflow.binpb"

STATUS_CODES: Final[dict[type[ServiceError], grpc.StatusCode]] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    Aborted: grpc.StatusCode.ABORTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    DataLoss: grpc.StatusCode.DATA_LOSS,
}

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


def status_code_for(error: ServiceError) -> grpc.StatusCode:
    """The status code of ``error``'s category (UNKNOWN for a bare ServiceError)."""
    for cls in type(error).__mro__:
        code = STATUS_CODES.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.UNKNOWN


def rich_status_for(error: ServiceError) -> Status:
    """``error`` as a google.rpc.Status: code, message, ErrorInfo (+ BadRequest)."""
    info = ErrorInfo(
        reason=error.info_reason, domain=ERROR_DOMAIN, metadata=error.metadata
    )
    details = [_packed(info)]
    if isinstance(error, InvalidArgument) and error.field_violations:
        bad_request = BadRequest(
            field_violations=[
                BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.field_violations
            ]
        )
        details.append(_packed(bad_request))
    if isinstance(error, ResourceExhausted) and error.retry_after_s is not None:
        retry = RetryInfo()
        retry.retry_delay.FromNanoseconds(int(error.retry_after_s * 1e9))
        details.append(_packed(retry))
    code = status_code_for(error)
    return Status(code=code.value[0], message=error.message, details=details)


def _packed(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Turns exceptions raised by handlers into statuses, for every RPC shape."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails],
            Awaitable[grpc.RpcMethodHandler[Any, Any] | None],
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        return replace_behavior(handler, lambda behavior: _mapped(behavior, method))


def _mapped(behavior: Behavior, method: str) -> Behavior:
    """``behavior`` answering its exceptions with a status, keeping its shape.

    grpc.aio picks how to call a handler from its kind (coroutine, async
    generator, plain function, generator), so each kind gets a wrapper of
    the same kind. Sync handlers run on a thread pool, with a context whose
    ``abort`` blocks instead of being awaited.
    """
    if inspect.isasyncgenfunction(behavior):

        async def async_stream(request: Any, context: AioContext) -> AsyncIterator[Any]:
            try:
                async for response in behavior(request, context):
                    yield response
            except Exception as error:
                await context.abort_with_status(_status_or_raise(error, method))

        return async_stream
    if inspect.iscoroutinefunction(behavior):

        async def async_unary(request: Any, context: AioContext) -> Any:
            try:
                return await behavior(request, context)
            except Exception as error:
                await context.abort_with_status(_status_or_raise(error, method))

        return async_unary
    if inspect.isgeneratorfunction(behavior):

        def sync_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                yield from behavior(request, context)
            except Exception as error:
                _abort_sync(context, _status_or_raise(error, method))

        return sync_stream

    def sync_unary(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return behavior(request, context)
        except Exception as error:
            _abort_sync(context, _status_or_raise(error, method))

    return sync_unary


def _abort_sync(context: grpc.ServicerContext, status: grpc.Status) -> NoReturn:
    # grpc.aio's context for sync handlers has abort() but no abort_with_status().
    context.abort(status.code, status.details, status.trailing_metadata)  # type: ignore[call-arg]


def _status_or_raise(error: Exception, method: str) -> grpc.Status:
    """The status that answers ``error``; re-raises a deliberate abort."""
    if isinstance(error, grpc.aio.AbortError):
        # The handler already aborted with a status of its own choosing.
        raise error
    if isinstance(error, ServiceError):
        logger.debug("%s failed: %s: %s", method, type(error).__name__, error)
        return rpc_status.to_status(rich_status_for(error))
    logger.error("unhandled error in %s", method, exc_info=error)
    return rpc_status.to_status(
        Status(code=grpc.StatusCode.INTERNAL.value[0], message="internal error")
    )


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
    chain: list[grpc.aio.ServerInterceptor] = [ErrorInterceptor()]
    if token_verifier is not None:
        chain.append(AuthInterceptor(token_verifier))
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
