"""Domain errors: what went wrong, in categories every service and caller share.

Code below the servicers raises these instead of touching gRPC. Each category
names one thing a caller can act on, and exactly one gRPC status code stands
for it at the edge (``services.shared.interceptor.RpcGuard``, by the one
table in ``services.shared.status``); on the calling side
``services.shared.grpc_client.rpc_errors_as_service_errors`` turns the status
back into the same class, so a gateway handler can write ``except NotFound``.
This module does not import ``grpc``.

The tree (category, status code, when)::

    ServiceError            UNKNOWN              raise a subclass, not this
    InvalidArgument         INVALID_ARGUMENT     bad input; carries field violations
    NotFound                NOT_FOUND            missing *or another user's* resource
    AlreadyExists           ALREADY_EXISTS       the thing to create is there
    FailedPrecondition      FAILED_PRECONDITION  not in a state to do it
    Aborted                 ABORTED              stale write; carries current revision
    Unavailable             UNAVAILABLE          transient (kernel starting, LLM down);
                                                 callers retry it automatically
    Unauthenticated         UNAUTHENTICATED      no token or a bad one
    PermissionDenied        PERMISSION_DENIED    known caller, not allowed
    ResourceExhausted       RESOURCE_EXHAUSTED   quota, output or memory limits
    DeadlineExceeded        DEADLINE_EXCEEDED    out of time
    DataLoss                DATA_LOSS            stored data cannot be read back

All categories subclass ``ServiceError`` directly.

Every error has a human ``message`` (it becomes the status message, so it says
what and which: ``notebook 'nb1' does not exist``), an optional machine
``reason`` (the ``ErrorInfo.reason``; by default the class name in
UPPER_SNAKE_CASE, e.g. ``NOTEBOOK_NOT_FOUND``) and string ``metadata`` (the
``ErrorInfo.metadata``). An error that is worth retrying says after how long
(``retry_after_s``, the ``RetryInfo`` detail; ``Unavailable`` defaults to a
second). Services subclass a category rather than the base:
``class NotebookNotFound(NotFound)``. Messages and metadata reach the client, so
they never hold secrets, tokens or code.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


class ServiceError(Exception):
    """Base of all domain errors; raise one of the categories below instead."""

    default_retry_after_s: float | None = None

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})
        self.retry_after_s = (
            self.default_retry_after_s if retry_after_s is None else retry_after_s
        )

    @property
    def info_reason(self) -> str:
        """ErrorInfo reason: ``reason`` if given, else the class name in UPPER_SNAKE."""
        if self.reason:
            return self.reason
        return _CAMEL_BOUNDARY.sub("_", type(self).__name__).upper()

    def __str__(self) -> str:
        return self.message


class FieldViolation(NamedTuple):
    """One bad field of a request: its path (``cells[2].code``) and what is wrong."""

    field: str
    description: str


class InvalidArgument(ServiceError):
    """The request is malformed or a field has a bad value."""

    def __init__(
        self,
        message: str,
        *,
        field_violations: Iterable[tuple[str, str]] = (),
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.field_violations = [FieldViolation(*v) for v in field_violations]


class NotFound(ServiceError):
    """The resource does not exist, or belongs to someone else."""


class AlreadyExists(ServiceError):
    """The resource the caller tried to create already exists."""


class FailedPrecondition(ServiceError):
    """The system is not in a state that allows the operation (no LLM configured)."""


class Aborted(ServiceError):
    """A write was based on a stale revision; ``current_revision`` says the latest."""

    def __init__(
        self,
        message: str,
        *,
        current_revision: int | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        if current_revision is not None:
            self.metadata["current_revision"] = str(current_revision)

    @property
    def current_revision(self) -> int | None:
        """The revision the resource is at now, if the server said."""
        value = self.metadata.get("current_revision")
        return int(value) if value is not None and value.lstrip("-").isdigit() else None


class Unavailable(ServiceError):
    """A transient failure; the same request may succeed later."""

    default_retry_after_s = 1.0


class Unauthenticated(ServiceError):
    """The caller sent no credentials, or credentials that do not verify."""


class PermissionDenied(ServiceError):
    """The caller is known but may not do this."""


class ResourceExhausted(ServiceError):
    """A quota or limit was hit (output cap, memory, rate).

    ``retry_after_s``, when given, becomes a ``RetryInfo`` detail: how long
    the caller should wait before trying again.
    """


class DeadlineExceeded(ServiceError):
    """The operation did not finish in the time it was given."""


class DataLoss(ServiceError):
    """Stored data cannot be read back (a corrupt file); nothing was changed."""
