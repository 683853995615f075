"""The one table between domain errors and gRPC statuses, read in both directions.

A server answers a ``ServiceError`` with ``rich_status_for(error)``: its
category's code, its message, an ``ErrorInfo`` (reason, metadata), a
``BadRequest`` for field violations, a ``RetryInfo`` when the error says when
to try again, and a ``RequestInfo`` naming the request, so a user can quote it
and an operator can find the log line. A client turns such a status back into
the same category with ``service_error_from_status``. Both go through
``STATUS_CODES``; codes outside it (INTERNAL, UNKNOWN, UNIMPLEMENTED ...) have
no category: they mean a bug somewhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc.error_details_pb2 import BadRequest, ErrorInfo, RequestInfo, RetryInfo
from google.rpc.status_pb2 import Status

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

if TYPE_CHECKING:
    from collections.abc import Iterable

ERROR_DOMAIN: Final = "reflow"

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
"""Each category's code; ``ERROR_CLASSES`` is the same table read backwards."""

ERROR_CLASSES: Final[dict[grpc.StatusCode, type[ServiceError]]] = {
    code: cls for cls, code in STATUS_CODES.items()
}


def status_code_for(error: ServiceError) -> grpc.StatusCode:
    """The status code of ``error``'s category (UNKNOWN for a bare ServiceError)."""
    for cls in type(error).__mro__:
        code = STATUS_CODES.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.UNKNOWN


def rich_status_for(error: ServiceError, request_id: str = "") -> Status:
    """``error`` as a google.rpc.Status with every detail it carries."""
    info = ErrorInfo(
        reason=error.info_reason, domain=ERROR_DOMAIN, metadata=error.metadata
    )
    details = [packed(info)]
    if isinstance(error, InvalidArgument) and error.field_violations:
        bad_request = BadRequest(
            field_violations=[
                BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.field_violations
            ]
        )
        details.append(packed(bad_request))
    if error.retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(error.retry_after_s * 1e9))
        details.append(packed(RetryInfo(retry_delay=delay)))
    if request_id:
        details.append(packed(RequestInfo(request_id=request_id)))
    code = status_code_for(error)
    return Status(code=code.value[0], message=error.message, details=details)


def internal_status(request_id: str) -> Status:
    """INTERNAL for a bug: nothing of it but the request id reaches the client."""
    message = "internal error"
    details = []
    if request_id:
        message = f"internal error (request id {request_id})"
        details.append(packed(RequestInfo(request_id=request_id)))
    return Status(
        code=grpc.StatusCode.INTERNAL.value[0], message=message, details=details
    )


def service_error_from_status(
    code: grpc.StatusCode, message: str, details: Iterable[any_pb2.Any]
) -> ServiceError | None:
    """The domain error a status stands for, or None for codes without one."""
    cls = ERROR_CLASSES.get(code)
    if cls is None:
        return None
    info, bad_request, retry = ErrorInfo(), BadRequest(), RetryInfo()
    for detail in details:
        # Unpack fills a message only when the detail has its type.
        _ = detail.Unpack(info) or detail.Unpack(bad_request) or detail.Unpack(retry)
    reason = info.reason or None
    metadata = dict(info.metadata)
    retry_after_s = None
    if retry.HasField("retry_delay"):
        retry_after_s = retry.retry_delay.ToNanoseconds() / 1e9
    if cls is InvalidArgument:
        violations = [(v.field, v.description) for v in bad_request.field_violations]
        return InvalidArgument(
            message, field_violations=violations, reason=reason, metadata=metadata
        )
    error = cls(message, reason=reason, metadata=metadata)
    error.retry_after_s = retry_after_s
    return error


def packed(message: Any) -> any_pb2.Any:
    """``message`` in an ``Any``, as status details are carried."""
    wrapped = any_pb2.Any()
    wrapped.Pack(message)
    return wrapped
