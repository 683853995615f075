"""The commands a WebSocket client can send, and the RPC each one becomes.

A command is ``{"type": NAME, "id": <client request id>, ...fields}``; the
fields are those of the RPC's request message (camelCase or snake_case),
``notebook_id`` is the socket's. CreateCellRequest's ``type`` field (the
cell type) collides with the message type, so it is sent as ``cellType``
(or ``cell_type``).

Edits must apply in the order they were sent (two quick updates of the same
cell must not swap), and a run must see the edits sent before it, so edits,
``run_cells`` and ``chat`` are *ordered*: they go through one queue, one at a
time (a streaming command only waits there until it is sent).
``interrupt`` and ``restart`` are not: they must act at once, even while
edits wait. ``ping`` is answered by the bridge itself.

``chat`` (``{"type": "chat", "id": ..., "message": ..., "conversationId":
..., "restrictTools": ...}``) is AssistantService.Chat: each response of its
stream is relayed as ``{"type": "chat_event", "id": <request id>, "event":
<ChatResponse>}`` before the command's reply. It needs the gateway to know
the assistant service (``ASSISTANT_SERVICE_ADDR``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from google.protobuf import message_factory

from services.gateway import convert
from services.gateway.clients import (
    ASSISTANT_SERVICE,
    EXECUTION_SERVICE,
    NOTEBOOK_SERVICE,
)
from services.shared.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Mapping

    from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
    from google.protobuf.message import Message

RESERVED: Final = frozenset({"type", "id"})
"""Command keys that are the envelope's, not the request's."""

_ALIASES: Final = {"cellType": "type", "cell_type": "type"}


@dataclass(frozen=True)
class Command:
    """One command: the RPC it calls and how it is scheduled."""

    name: str
    method: MethodDescriptor
    ordered: bool
    aliases: Mapping[str, str]
    # The message type a streaming command's responses are relayed under;
    # None for streams whose events reach the client another way (runs).
    event_type: str | None = None

    @property
    def request_type(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.input_type)

    @property
    def response_type(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.output_type)

    @property
    def streams(self) -> bool:
        return self.method.server_streaming

    def request(self, message: Mapping[str, Any], notebook_id: str) -> Message:
        """The RPC request a command message describes; InvalidArgument if bad."""
        fields: dict[str, Any] = {}
        for key, value in message.items():
            if key in RESERVED:
                continue
            fields[self.aliases.get(key, key)] = value
        return convert.request_from_json(fields, self.request_type, notebook_id)


def _command(
    name: str,
    service: ServiceDescriptor,
    method: str,
    ordered: bool,
    aliases: Mapping[str, str] | None = None,
    event_type: str | None = None,
) -> Command:
    return Command(
        name, service.methods_by_name[method], ordered, aliases or {}, event_type
    )


COMMANDS: Final = {
    command.name: command
    for command in (
        _command("create_cell", NOTEBOOK_SERVICE, "CreateCell", True, _ALIASES),
        _command("update_cell", NOTEBOOK_SERVICE, "UpdateCell", True),
        _command("move_cell", NOTEBOOK_SERVICE, "MoveCell", True),
        _command("delete_cell", NOTEBOOK_SERVICE, "DeleteCell", True),
        _command("run_cells", EXECUTION_SERVICE, "RunCells", True),
        _command("interrupt", EXECUTION_SERVICE, "InterruptKernel", False),
        _command("restart", EXECUTION_SERVICE, "RestartKernel", False),
        _command("chat", ASSISTANT_SERVICE, "Chat", True, event_type="chat_event"),
    )
}


def command_named(name: object) -> Command:
    """The command called ``name``; InvalidArgument naming the known ones if none."""
    command = COMMANDS.get(name) if isinstance(name, str) else None
    if command is None:
        known = ", ".join(["ping", *COMMANDS])
        raise InvalidArgument(
            f"unknown message type {name!r}; expected one of: {known}",
            field_violations=[("type", "is not a known command")],
        )
    return command
