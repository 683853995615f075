"""Calling another Reflow service: channels, deadlines, and statuses as domain errors.

Open one channel per downstream service at startup with ``open_channel`` and
pass it to a small client class (``clients.py`` in each service). Such a
client puts a deadline on every call (``DEFAULT_TIMEOUT_S`` unless it knows
better), forwards the caller's internal token (``bearer_metadata``), and wraps
its calls in ``rpc_errors_as_service_errors(name)`` so callers see ``NotFound``
and friends, with the reason, metadata and field violations the server sent,
instead of ``AioRpcError``.

UNAVAILABLE is retried by the channel itself (up to 4 attempts, exponential
backoff with jitter), so a service that raises ``Unavailable`` must only do
so when trying again is safe.
"""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import grpc
from google.rpc.status_pb2 import Status

from services.shared import tracing
from services.shared.errors import Unavailable
from services.shared.grpc_server import MAX_MESSAGE_BYTES
from services.shared.interceptor import current_request_id
from services.shared.status import service_error_from_status

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from google.protobuf import any_pb2

    from services.shared.errors import ServiceError

logger = logging.getLogger(__name__)

STATUS_DETAILS_KEY: Final = "grpc-status-details-bin"
"""The trailer grpcio-status puts the serialized google.rpc.Status in."""

DEFAULT_TIMEOUT_S: Final = 5.0
"""Deadline for a call that has no better idea (streams set their own or none)."""

RETRY_POLICY: Final = {
    "maxAttempts": 4,
    "initialBackoff": "0.1s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}

# An empty name matches every method of every service on the channel.
_SERVICE_CONFIG: Final = json.dumps(
    {"methodConfig": [{"name": [{}], "retryPolicy": RETRY_POLICY}]}
)

CHANNEL_OPTIONS: Final = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Ping idle connections so a dead peer (a restarted pod, a dropped NAT
    # entry) is noticed in seconds rather than at the next call's deadline.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)


def open_channel(address: str, *, retry: bool = True) -> grpc.aio.Channel:
    """An insecure channel to ``address`` (``host:port``) with keepalive and retries."""
    options: list[tuple[str, str | int]] = list(CHANNEL_OPTIONS)
    if retry:
        options += [
            ("grpc.enable_retries", 1),
            ("grpc.service_config", _SERVICE_CONFIG),
        ]
    else:
        options.append(("grpc.enable_retries", 0))
    return grpc.aio.insecure_channel(
        address, options=options, interceptors=tracing.client_interceptors()
    )


ROUTING_HEADER: Final = "x-reflow-notebook-id"
"""Names the notebook a call is about, so a load balancer can keep each
notebook on one replica (Envoy's ring_hash on this header)."""


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata that presents ``token`` and carries the trace context on.

    ``metadata=bearer_metadata(t)``: every call one service makes to another
    goes through here, so this is where the W3C ``traceparent`` of the RPC
    being served travels downstream (when spans are exported, the client
    instrumentation replaces it with its own span's).
    """
    headers: dict[str, str] = {}
    tracing.inject_context(headers)
    return (("authorization", f"Bearer {token}"), *headers.items())


def notebook_metadata(token: str, notebook_id: str) -> tuple[tuple[str, str], ...]:
    """Call metadata that presents ``token`` and names the notebook the call
    is about, for routing (``ROUTING_HEADER``)."""
    return (*bearer_metadata(token), (ROUTING_HEADER, notebook_id))


@asynccontextmanager
async def rpc_errors_as_service_errors(service: str) -> AsyncIterator[None]:
    """Re-raise an ``AioRpcError`` from the block as the matching ``ServiceError``.

    ``async with rpc_errors_as_service_errors("notebook"): await stub.Get…``.
    The original error is chained as ``__cause__``; codes with no domain
    category are re-raised unchanged.
    """
    try:
        yield
    except grpc.aio.AioRpcError as error:
        domain_error = service_error_from(error, service)
        if domain_error is None:
            raise
        raise domain_error from error


def service_error_from(
    error: grpc.aio.AioRpcError, service: str = "downstream"
) -> ServiceError | None:
    """The domain error ``error`` stands for, or None for codes without one.

    A failure the ``service`` did not answer itself (it is down, or the
    connection broke: no rich status came back) says so in words, because
    grpc's own message names internal addresses ("ipv4:127.0.0.1:50052:
    Connection refused"), which must not travel on towards a user. That
    message goes to the log instead, with the request it failed.
    """
    details = _status_details(error)
    if details is None and error.code() == grpc.StatusCode.UNAVAILABLE:
        logger.warning(
            "the %s service is unavailable (request %s): %s",
            service,
            current_request_id(),
            error.details(),
        )
        return Unavailable(
            f"the {service} service is unavailable, try again",
            reason="SERVICE_UNAVAILABLE",
            metadata={"service": service},
        )
    message = error.details() or error.code().name
    return service_error_from_status(error.code(), message, details or ())


def _status_details(error: grpc.aio.AioRpcError) -> list[any_pb2.Any] | None:
    """The details of the google.rpc.Status in ``error``'s trailers; None if none."""
    for key, value in error.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = Status.FromString(value)
            if status.code == error.code().value[0]:
                return list(status.details)
            # A proxy rewrote the status: trust the code the caller sees.
            logger.warning("ignoring status details that contradict %s", error.code())
            return []
    return None
