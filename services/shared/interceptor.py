"""The one server interceptor: what every RPC of every service goes through.

``RpcGuard`` wraps each handler so that, for every call,

1. the call gets a **request id**: the one the verified internal token carries
   (the gateway put it there), else a well-formed ``x-request-id`` the caller
   sent (Envoy sets one), else a new one. ``current_request_id()`` reads it;
   log lines and error details quote it;
2. any exception becomes a **status**: a ``ServiceError`` its category's code
   with rich details (``services.shared.status``), anything else INTERNAL
   "internal error (request id …)" with the traceback in the log only;
3. the request is **decoded inside that mapping**: grpc's own deserializer is
   taken off the handler and run here, so bytes that do not parse (a truncated
   message, invalid UTF-8 in a string) answer INVALID_ARGUMENT naming the
   request, instead of grpc's UNKNOWN "Unexpected DecodeError" from outside
   every interceptor;
4. when the server has a token verifier, the **internal token** is checked
   (except for health and reflection) and the caller set for
   ``auth.current_user()``;
5. the call is **observed**: counted and timed by method and status code
   (``services.shared.metrics``), and its trace context made current
   (``services.shared.tracing``), so log lines and downstream calls carry
   the caller's trace id.

Handlers are async: a coroutine for unary responses, an async generator for
streamed ones. The wrapper keeps that kind, because grpc.aio decides how to
call a handler from it; sync handlers are refused when the RPC arrives.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import re
import time
import uuid
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final

import grpc
from google.protobuf.message import DecodeError
from grpc_status import rpc_status

from services.shared.auth import bearer_token, enter_caller, is_public_method
from services.shared.errors import InvalidArgument, ServiceError
from services.shared.metrics import record_rpc
from services.shared.status import internal_status, rich_status_for
from services.shared.tracing import enter_remote_context

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable

    from services.shared.auth import TokenVerifier

    Behavior = Callable[..., Any]
    Deserializer = Callable[[bytes], Any] | None
    Context = grpc.aio.ServicerContext[Any, Any]

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER: Final = "x-request-id"
_WELL_FORMED_ID: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "reflow_request_id", default=""
)


def current_request_id() -> str:
    """The id of the RPC being served ("" outside one)."""
    return _request_id.get()


def new_request_id() -> str:
    """A fresh request id, for calls that start here."""
    return uuid.uuid4().hex


def request_id_from(metadata: Any) -> str:
    """The caller's ``x-request-id`` if it is well formed, else a new one."""
    for key, value in metadata or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str):
            if _WELL_FORMED_ID.match(value):
                return value
            break
    return new_request_id()


class RpcGuard(grpc.aio.ServerInterceptor):
    """Request ids, errors as statuses, guarded decoding and (optionally) auth."""

    def __init__(self, verifier: TokenVerifier | None = None) -> None:
        self._verifier = verifier

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
        verifier = None if is_public_method(method) else self._verifier
        call = _Call(method, handler_call_details.invocation_metadata, verifier)
        return _guarded(handler, call)


class _Call:
    """What the guard knows of one RPC before its handler runs."""

    def __init__(
        self, method: str, metadata: Any, verifier: TokenVerifier | None
    ) -> None:
        self.method = method
        self._metadata = metadata
        self._verifier = verifier

    @asynccontextmanager
    async def scope(self, context: Context) -> AsyncIterator[None]:
        """Set the request id and caller; answer any exception with a status."""
        # No reset: grpc.aio serves each RPC in a task of its own, whose
        # context ends with it (and an async generator may be finalised from
        # another context, where reset() would fail).
        started = time.perf_counter()
        code = grpc.StatusCode.CANCELLED  # unless it ends any other way
        request_id = request_id_from(self._metadata)
        _request_id.set(request_id)
        enter_remote_context(self._metadata)
        try:
            if self._verifier is not None:
                token = bearer_token(self._metadata)
                caller = self._verifier.caller(token)
                if caller.request_id:
                    request_id = caller.request_id
                    _request_id.set(request_id)
                enter_caller(caller)
            yield
            code = _code_set_on(context) or grpc.StatusCode.OK
        except grpc.aio.AbortError:
            code = _code_set_on(context) or grpc.StatusCode.UNKNOWN
            raise
        except Exception as error:
            status = self._status(error, request_id)
            code = status.code
            await context.abort_with_status(status)
        finally:
            record_rpc(self.method, code.name, time.perf_counter() - started)

    def _status(self, error: Exception, request_id: str) -> grpc.Status:
        if isinstance(error, grpc.aio.AbortError):
            raise error  # the handler aborted with a status of its own choosing
        if isinstance(error, ServiceError):
            logger.debug(
                "%s failed (request %s): %s: %s",
                self.method,
                request_id,
                type(error).__name__,
                error,
            )
            return rpc_status.to_status(rich_status_for(error, request_id))
        logger.error(
            "unhandled error in %s (request %s)",
            self.method,
            request_id,
            exc_info=error,
        )
        return rpc_status.to_status(internal_status(request_id))


def _code_set_on(context: Context) -> grpc.StatusCode | None:
    """The code the handler set or aborted with, if any."""
    code = context.code()
    if code is None or isinstance(code, grpc.StatusCode):
        return code
    # grpc.aio keeps the code a handler set as the raw integer.
    return next((known for known in grpc.StatusCode if known.value[0] == code), None)


def decoded(deserialize: Deserializer, request: Any) -> Any:
    """``request`` parsed by ``deserialize``; INVALID_ARGUMENT if it does not parse."""
    if deserialize is None or not isinstance(request, bytes):
        return request
    try:
        return deserialize(request)
    except (DecodeError, ValueError, UnicodeDecodeError) as error:
        logger.debug("undecodable request: %s", error)
        raise InvalidArgument(
            "the request message cannot be parsed (truncated, or a string "
            "field that is not valid UTF-8)",
            field_violations=[("request", "is not a valid serialized message")],
            reason="UNDECODABLE_REQUEST",
        ) from None


def _guarded(
    handler: grpc.RpcMethodHandler[Any, Any], call: _Call
) -> grpc.RpcMethodHandler[Any, Any]:
    """``handler`` with its behaviour wrapped and its deserializer taken over."""
    deserialize: Deserializer = handler.request_deserializer
    kinds: tuple[tuple[Behavior | None, Callable[..., Any], bool], ...] = (
        (handler.unary_unary, grpc.unary_unary_rpc_method_handler, False),
        (handler.unary_stream, grpc.unary_stream_rpc_method_handler, False),
        (handler.stream_unary, grpc.stream_unary_rpc_method_handler, True),
        (handler.stream_stream, grpc.stream_stream_rpc_method_handler, True),
    )
    for behavior, make, streamed_requests in kinds:
        if behavior is not None:
            wrapped: grpc.RpcMethodHandler[Any, Any] = make(
                _wrapped(behavior, call, deserialize, streamed_requests),
                request_deserializer=None,
                response_serializer=handler.response_serializer,
            )
            return wrapped
    return handler


def _wrapped(
    behavior: Behavior, call: _Call, deserialize: Deserializer, streamed: bool
) -> Behavior:
    """``behavior`` inside ``call.scope``, with requests decoded; same kind."""

    def requests_of(raw: Any) -> Any:
        if streamed:
            return _decoded_each(deserialize, raw)
        return decoded(deserialize, raw)

    if inspect.isasyncgenfunction(behavior):

        async def stream(raw: Any, context: Context) -> AsyncIterator[Any]:
            async with call.scope(context):
                async for response in behavior(requests_of(raw), context):
                    yield response

        return stream
    if inspect.iscoroutinefunction(behavior):

        async def unary(raw: Any, context: Context) -> Any:
            async with call.scope(context):
                return await behavior(requests_of(raw), context)

        return unary
    raise TypeError(f"{call.method}: handlers must be async (got {behavior!r})")


async def _decoded_each(
    deserialize: Deserializer, raw: AsyncIterable[Any]
) -> AsyncIterator[Any]:
    async for request in raw:
        yield decoded(deserialize, request)
