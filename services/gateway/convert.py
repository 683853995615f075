"""Proto ⇄ the WebSocket protocol's JSON, and errors as ``google.rpc.Status``.

Messages are written in canonical proto JSON (``json_format.MessageToDict``:
camelCase names, enums by name, default values left out, 64-bit integers as
strings), the format gRPC-Web and REST clients see too. Requests are read
with ``json_format.ParseDict``, which accepts camelCase and snake_case names.

Every failure a client is told about, whether it came from a service (an
``AioRpcError``) or from the gateway (a ``ServiceError``), is first turned
into a ``google.rpc.Status`` and then into one JSON shape::

    {"code": "INVALID_ARGUMENT", "message": "...",
     "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest", ...}]}
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final, TypeVar

import grpc
from google.protobuf import json_format
from google.rpc import error_details_pb2  # noqa: F401  (registers detail types for JSON)
from google.rpc.status_pb2 import Status

from services.shared.errors import InvalidArgument, ServiceError
from services.shared.grpc_client import STATUS_DETAILS_KEY, service_error_from
from services.shared.status import rich_status_for

if TYPE_CHECKING:
    from collections.abc import Mapping

    from google.protobuf.message import Message

    from reflow.assistant.v1 import assistant_pb2
    from reflow.execution.v1 import execution_pb2
    from reflow.notebook.v1 import notebook_pb2

logger = logging.getLogger(__name__)

M = TypeVar("M", bound="Message")

_CODE_NAMES: Final = {code.value[0]: code.name for code in grpc.StatusCode}


def message_json(message: Message) -> dict[str, Any]:
    """``message`` in canonical proto JSON."""
    return json_format.MessageToDict(message)


def notebook_event(response: notebook_pb2.WatchNotebookResponse) -> dict[str, Any]:
    """``{"type": "notebook_event", "event": <WatchNotebookResponse>}``."""
    return {"type": "notebook_event", "event": message_json(response)}


def execution_event(event: execution_pb2.ExecutionEvent) -> dict[str, Any]:
    """``{"type": "execution_event", "event": <ExecutionEvent>}``."""
    return {"type": "execution_event", "event": message_json(event)}


def reply(request_id: object, result: Mapping[str, Any]) -> dict[str, Any]:
    """A command's success reply."""
    return {"type": "reply", "id": request_id, "ok": True, "result": dict(result)}


def error_reply(request_id: object, status: Status) -> dict[str, Any]:
    """A command's failure reply."""
    return {
        "type": "reply",
        "id": request_id,
        "ok": False,
        "error": status_json(status),
    }


def stream_error(status: Status) -> dict[str, Any]:
    """Sent before the socket is closed because a watch stream failed."""
    return {"type": "error", "error": status_json(status)}


def status_json(status: Status) -> dict[str, Any]:
    """``{"code": "NOT_FOUND", "message": ..., "details": [...]}``."""
    return {
        "code": _CODE_NAMES.get(status.code, "UNKNOWN"),
        "message": status.message,
        "details": [_detail_json(detail) for detail in status.details],
    }


def _detail_json(detail: Any) -> dict[str, Any]:
    try:
        return json_format.MessageToDict(detail)
    except (TypeError, json_format.Error):
        # A detail type this gateway does not know: say what it was.
        return {"@type": detail.type_url}


def status_of_rpc_error(error: grpc.aio.AioRpcError, service: str) -> Status:
    """The rich status ``service`` failed with.

    When the service sent none (it is down, the connection broke), grpc's
    own message names internal addresses: the client gets the words of
    ``grpc_client.service_error_from`` instead, or just the code's name.
    """
    code = error.code().value[0]
    for key, value in error.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = Status.FromString(value)
            if status.code == code:
                return status
    domain_error = service_error_from(error, service)
    if domain_error is not None:
        return rich_status_for(domain_error)
    logger.warning(
        "the %s service failed without an answer: %s %s",
        service,
        error.code().name,
        error.details(),
    )
    return Status(code=code, message=f"the {service} service failed")


def status_of_chat_error(error: assistant_pb2.ChatError) -> Status:
    """A turn's ChatError event as a status (its code is a status code name)."""
    code = grpc.StatusCode.__members__.get(error.code, grpc.StatusCode.UNKNOWN)
    return Status(code=code.value[0], message=error.message)


def status_of_error(error: ServiceError) -> Status:
    """A gateway-side error as the status a service would have sent."""
    return rich_status_for(error)


def request_from_json(
    fields: Mapping[str, Any], request_type: type[M], notebook_id: str
) -> M:
    """The request ``fields`` describe, for the socket's notebook.

    Raises InvalidArgument when a field is unknown or has the wrong type, or
    when ``notebook_id`` is given and names another notebook.
    """
    given = fields.get("notebookId", fields.get("notebook_id"))
    if given not in (None, "", notebook_id):
        raise InvalidArgument(
            "notebook_id must be the socket's notebook",
            field_violations=[("notebook_id", "must be the socket's notebook")],
        )
    request = request_type()
    try:
        json_format.ParseDict(dict(fields), request)
    except RecursionError:
        raise InvalidArgument(
            "invalid request: nested too deeply",
            field_violations=[("request", "is nested too deeply")],
        ) from None
    except json_format.ParseError as error:
        message = str(error).splitlines()[0]
        raise InvalidArgument(
            f"invalid request: {message}", field_violations=[("request", message)]
        ) from None
    if "notebook_id" in request.DESCRIPTOR.fields_by_name:
        setattr(request, "notebook_id", notebook_id)  # noqa: B010  (field set by name)
    return request
