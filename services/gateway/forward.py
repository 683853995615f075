"""Generic forwarding of the public services' RPCs to the services that own them.

The gateway serves ``reflow.notebook.v1.NotebookService``,
``reflow.execution.v1.ExecutionService`` and (when configured)
``reflow.assistant.v1.AssistantService`` without implementing any of them:
for every method in their descriptors it registers a handler that takes the
request as raw bytes and sends those same bytes on, and relays the
response bytes back. Nothing is re-serialized, so a field added to a
contract passes through a gateway that was built before it.

For each call the handler

* verifies the caller's ``authorization: Bearer <user JWT>`` (UNAUTHENTICATED,
  with an ErrorInfo reason, when it is missing or bad) and sends an internal
  token naming the user in its place (minted for the user and reused while
  it has most of its lifetime left); the user's own token never leaves the
  gateway;
* parses the request with its message type: bytes that do not parse
  (truncated, invalid UTF-8 in a string) are INVALID_ARGUMENT here, and a
  ``notebook_id`` that is not a well-formed id is INVALID_ARGUMENT naming the
  field, before it goes anywhere (a NUL or an "é" cannot be put in gRPC
  metadata at all);
* adds ``x-reflow-notebook-id`` when the request has a ``notebook_id`` field,
  so the services can be load-balanced per notebook;
* passes on the request id (``x-request-id``, which Envoy sets; also carried
  by the internal token) and the caller's tracing headers (``traceparent``,
  ``tracestate``), and nothing else of its metadata;
* gives the downstream call the caller's remaining deadline (capped at
  ``unary_timeout_s`` for unary calls; streams with no deadline keep none);
* cancels the downstream call when the caller cancels or goes away;
* relays a downstream failure unchanged: the same status code, details and
  trailing metadata, ``grpc-status-details-bin`` (the rich error) included;
  unless the service never answered (it is down, the connection broke): then
  grpc's own message names internal addresses, so the caller gets
  UNAVAILABLE "the execution service is unavailable, try again" with a
  RetryInfo and the request id, and the log gets grpc's message.

Only the methods of the listed public services are registered, so every
``…InternalService`` answers UNIMPLEMENTED at the gateway. Client-streaming
methods are refused at startup: the contracts have none, and forwarding them
would need a different handler.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import message_factory

from services.gateway.clients import method_path
from services.shared.grpc_client import (
    ROUTING_HEADER,
    STATUS_DETAILS_KEY,
    bearer_metadata,
    service_error_from,
)
from services.shared.interceptor import REQUEST_ID_HEADER, current_request_id, decoded
from services.shared.validation import Violations

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
    from google.protobuf.message import Message

    from services.gateway.auth import UserAuthenticator
    from services.gateway.clients import Downstream
    from services.shared.auth import InternalTokens

    Context = grpc.aio.ServicerContext[bytes, bytes]

logger = logging.getLogger(__name__)


class Forwarder:
    """Builds the forwarding handlers of the public services."""

    def __init__(
        self,
        authenticator: UserAuthenticator,
        tokens: InternalTokens,
        unary_timeout_s: float = 60.0,
    ) -> None:
        self._authenticator = authenticator
        self._tokens = tokens
        self._unary_timeout_s = unary_timeout_s

    def handler(self, downstream: Downstream) -> grpc.GenericRpcHandler:
        """A handler forwarding every method of ``downstream``'s public service."""
        service = downstream.service
        handlers = {
            method.name: self._method_handler(method, downstream)
            for method in _forwardable(service)
        }
        return grpc.method_handlers_generic_handler(service.full_name, handlers)

    def _method_handler(
        self, method: MethodDescriptor, downstream: Downstream
    ) -> grpc.RpcMethodHandler[bytes, bytes]:
        notebook_id_of = _notebook_id_reader(method)
        path = method_path(method)
        channel = downstream.channel
        name = downstream.name
        if method.server_streaming:
            stream: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = (
                channel.unary_stream(path)
            )

            async def forward_stream(
                request: bytes, context: Context
            ) -> AsyncIterator[bytes]:
                metadata = await self._metadata(context, notebook_id_of(request))
                call = stream(request, metadata=metadata, timeout=_remaining(context))
                # The caller may go while this generator waits to be resumed,
                # where no exception reaches it: cancel on the RPC's end too.
                context.add_done_callback(_canceller(call))
                try:
                    async for response in call:
                        yield response
                except grpc.aio.AioRpcError as error:
                    await _relay(error, context, path, name)
                finally:
                    call.cancel()

            return grpc.unary_stream_rpc_method_handler(forward_stream)

        unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            path
        )

        async def forward_unary(request: bytes, context: Context) -> bytes:
            metadata = await self._metadata(context, notebook_id_of(request))
            timeout = _capped(_remaining(context), self._unary_timeout_s)
            call = unary(request, metadata=metadata, timeout=timeout)
            try:
                response: bytes = await call
            except grpc.aio.AioRpcError as error:
                await _relay(error, context, path, name)
            return response

        return grpc.unary_unary_rpc_method_handler(forward_unary)

    async def _metadata(
        self, context: Context, notebook_id: str
    ) -> tuple[tuple[str, str], ...]:
        """The downstream call's metadata; raises TokenRejected for a bad caller."""
        incoming = context.invocation_metadata() or ()
        user = await self._authenticator.authenticate_metadata(incoming)
        # One token per user, reused while fresh (signing one per call, and
        # verifying each new one downstream, was a tenth of a millisecond
        # per hop); the request id travels in its own header.
        metadata = list(bearer_metadata(self._tokens.token_for(user)))
        metadata.append((REQUEST_ID_HEADER, current_request_id()))
        if notebook_id:
            metadata.append((ROUTING_HEADER, notebook_id))
        # The caller's trace context travels on inside bearer_metadata, as the
        # current one (services.shared.tracing), not copied from the headers.
        return tuple(metadata)


def _forwardable(service: ServiceDescriptor) -> list[MethodDescriptor]:
    methods = list(service.methods)
    for method in methods:
        if method.client_streaming:
            raise ValueError(f"cannot forward client-streaming {method.full_name}")
    return methods


def _notebook_id_reader(method: MethodDescriptor) -> Callable[[bytes], str]:
    """A function checking a serialized request and reading its ``notebook_id``.

    Raises InvalidArgument when the bytes do not parse or the id is not one;
    "" when the request has no notebook id (the service says if it needs one).
    """
    request_type: type[Message] = message_factory.GetMessageClass(method.input_type)
    has_notebook_id = "notebook_id" in method.input_type.fields_by_name

    def notebook_id_of(request: bytes) -> str:
        message = decoded(request_type.FromString, request)
        value: Any = getattr(message, "notebook_id", "") if has_notebook_id else ""
        if not isinstance(value, str) or not value:
            return ""
        violations = Violations()
        violations.identifier("notebook_id", value)
        violations.raise_if_any()
        return value

    return notebook_id_of


def _canceller(call: grpc.aio.Call) -> Any:
    """A done-callback cancelling ``call`` (typed Any: the stubs' callback type
    is a class no function matches)."""

    def cancel(_: object) -> None:
        call.cancel()

    return cancel


def _remaining(context: Context) -> float | None:
    remaining: float | None = context.time_remaining()
    return remaining


def _capped(remaining: float | None, cap: float) -> float:
    return cap if remaining is None else min(remaining, cap)


async def _relay(
    error: grpc.aio.AioRpcError, context: Context, path: str, service: str
) -> None:
    """Fail the caller's RPC as the downstream one failed, hiding the topology."""
    if not _answered_by_service(error):
        domain_error = service_error_from(error, service)
        if domain_error is not None:
            raise domain_error from None
        logger.warning(
            "%s failed without an answer from the %s service (request %s): %s %s",
            path,
            service,
            current_request_id(),
            error.code().name,
            error.details(),
        )
        await context.abort(
            error.code(),
            f"the {service} service failed (request id {current_request_id()})",
        )
    if error.code() == grpc.StatusCode.UNAUTHENTICATED:
        # The caller's token was fine (it was checked here); a service that
        # refuses the internal token means REFLOW_INTERNAL_SECRET differs.
        logger.warning(
            "%s refused the gateway's internal token: %s", path, error.details()
        )
    trailing: Sequence[tuple[str, str | bytes]] = tuple(error.trailing_metadata() or ())
    await context.abort(error.code(), error.details() or "", trailing)


def _answered_by_service(error: grpc.aio.AioRpcError) -> bool:
    """Whether a service sent this failure (our services always send a rich
    status), rather than grpc itself (connection refused, reset, too large)."""
    return any(key == STATUS_DETAILS_KEY for key, _ in error.trailing_metadata() or ())
