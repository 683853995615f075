"""The WebSocket bridge over a real uvicorn: auth, events, commands, slow clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket as socket_module
from typing import TYPE_CHECKING, Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from reflow.notebook.v1 import notebook_pb2
from services.gateway.config import WebSocketSettings
from services.notebook.models import CellId, NotebookId
from tests.gateway.conftest import receive, receive_until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from websockets.asyncio.client import ClientConnection

    from tests.gateway.conftest import Gateway

pb = notebook_pb2


async def read_forever(socket: ClientConnection) -> None:
    while True:
        await socket.recv()


async def close_of(socket: ClientConnection) -> tuple[int | None, str | None]:
    """The code and reason the gateway closes ``socket`` with (within 10 s)."""
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(read_forever(socket), 10)
    return socket.close_code, socket.close_reason


async def send(socket: ClientConnection, **message: Any) -> None:
    await socket.send(json.dumps(message))


async def replies_and_events(
    socket: ClientConnection, request_id: str, event_key: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The reply to ``request_id`` and the first event with ``event_key``."""
    reply: dict[str, Any] | None = None
    event: dict[str, Any] | None = None
    async with asyncio.timeout(5):
        while reply is None or event is None:
            message = await receive(socket)
            if message["type"] == "reply" and message["id"] == request_id:
                reply = message
            elif event_key in message.get("event", {}):
                event = message
    return reply, event


async def cell(gateway: Gateway, notebook_id: str, code: str = "x = 1") -> str:
    reply = await gateway.notebooks.CreateCell(
        pb.CreateCellRequest(notebook_id=notebook_id, code=code),
        metadata=gateway.metadata(),
    )
    return reply.cell.id


# -- connecting -----------------------------------------------------------------


async def test_authenticated_socket_first_gets_the_snapshot(gateway: Gateway) -> None:
    notebook = await gateway.notebook()

    async with gateway.socket(notebook.id) as socket:
        message = await receive(socket)

    assert message["type"] == "notebook_event"
    assert message["event"]["snapshot"]["id"] == notebook.id
    assert message["event"]["revision"] == "1"


async def test_bad_token_is_refused_with_a_reason(gateway: Gateway) -> None:
    notebook = await gateway.notebook()

    async with connect(gateway.ws_url(notebook.id)) as socket:
        await send(socket, type="auth", token="not-a-jwt")
        closed = await close_of(socket)

    assert closed == (4401, "authentication failed: token is malformed")


async def test_expired_token_is_refused_with_a_reason(gateway: Gateway) -> None:
    notebook = await gateway.notebook()

    async with connect(gateway.ws_url(notebook.id)) as socket:
        await send(socket, type="auth", token=gateway.token(ttl_s=-120))
        closed = await close_of(socket)

    assert closed == (4401, "authentication failed: token has expired")


async def test_first_message_must_be_auth(gateway: Gateway) -> None:
    notebook = await gateway.notebook()

    async with connect(gateway.ws_url(notebook.id)) as socket:
        await send(socket, type="ping", id="1")
        closed = await close_of(socket)

    assert closed == (4401, 'first message must be {"type": "auth", "token": "<JWT>"}')


@pytest.mark.parametrize(
    "ws_settings", [WebSocketSettings(auth_timeout_s=0.2)], indirect=True
)
async def test_silent_client_is_closed_after_the_auth_timeout(
    gateway: Gateway,
) -> None:
    async with connect(gateway.ws_url("nb1")) as socket:
        closed = await close_of(socket)

    assert closed == (4401, "no auth message within 0.2 s")


async def test_another_users_notebook_closes_as_not_found(gateway: Gateway) -> None:
    notebook = await gateway.notebook("alice")

    async with gateway.socket(notebook.id, user="bob") as socket:
        error = await receive(socket)
        closed = await close_of(socket)

    assert error["type"] == "error"
    assert error["error"]["code"] == "NOT_FOUND"
    assert closed[0] == 4404


# -- events and commands -----------------------------------------------------------


async def test_create_cell_replies_and_its_event_arrives(gateway: Gateway) -> None:
    notebook = await gateway.notebook()

    async with gateway.socket(notebook.id) as socket:
        await receive(socket)  # the snapshot
        await send(socket, type="create_cell", id="c1", code="y = x + 1")
        reply, event = await replies_and_events(socket, "c1", "cellCreated")

    assert reply["ok"] is True
    assert reply["result"]["cell"]["reads"] == ["x"]
    assert event["event"]["cellCreated"]["cell"]["id"] == reply["result"]["cell"]["id"]


async def test_update_cell_accepts_snake_case_fields(gateway: Gateway) -> None:
    notebook = await gateway.notebook()
    cell_id = await cell(gateway, notebook.id)

    async with gateway.socket(notebook.id) as socket:
        await receive(socket)
        await send(socket, type="update_cell", id="u1", cell_id=cell_id, code="x = 2")
        reply, event = await replies_and_events(socket, "u1", "cellUpdated")

    assert reply["result"]["cell"]["code"] == "x = 2"
    assert event["event"]["cellUpdated"]["cell"]["code"] == "x = 2"


async def test_create_cell_takes_the_cell_type_as_cell_type(gateway: Gateway) -> None:
    notebook = await gateway.notebook()

    async with gateway.socket(notebook.id) as socket:
        await receive(socket)
        await send(
            socket,
            type="create_cell",
            id="c1",
            cellType="CELL_TYPE_SQL",
            code="select 1",
        )
        reply = await receive_until(socket, "reply")

    assert reply["result"]["cell"]["type"] == "CELL_TYPE_SQL"


async def test_ping_gets_a_pong(gateway: Gateway) -> None:
    notebook = await gateway.notebook()

    async with gateway.socket(notebook.id) as socket:
        await receive(socket)
        await send(socket, type="ping", id="p1")
        pong = await receive(socket)

    assert pong == {"type": "pong", "id": "p1"}


async def test_failed_command_replies_with_code_message_and_details(
    gateway: Gateway,
) -> None:
    notebook = await gateway.notebook()

    async with gateway.socket(notebook.id) as socket:
        await receive(socket)
        await send(socket, type="delete_cell", id="d1", cellId="no-such-cell")
        reply = await receive_until(socket, "reply")

    assert reply["id"] == "d1"
    assert reply["ok"] is False
    assert reply["error"]["code"] == "NOT_FOUND"
    assert "no-such-cell" in reply["error"]["message"]
    assert reply["error"]["details"][0]["reason"] == "CELL_NOT_FOUND"


async def test_malformed_command_is_invalid_argument(gateway: Gateway) -> None:
    notebook = await gateway.notebook()

    async with gateway.socket(notebook.id) as socket:
        await receive(socket)
        await send(socket, type="create_cell", id="c1", code=5, colour="red")
        reply = await receive_until(socket, "reply")

    assert (reply["id"], reply["ok"]) == ("c1", False)
    assert reply["error"]["code"] == "INVALID_ARGUMENT"


async def test_unknown_command_is_invalid_argument(gateway: Gateway) -> None:
    notebook = await gateway.notebook()

    async with gateway.socket(notebook.id) as socket:
        await receive(socket)
        await send(socket, type="explode", id="e1")
        reply = await receive_until(socket, "reply")

    assert reply["error"]["code"] == "INVALID_ARGUMENT"
    assert reply["error"]["message"].startswith("unknown message type 'explode'")


async def test_second_socket_on_the_notebook_sees_the_same_events(
    gateway: Gateway,
) -> None:
    notebook = await gateway.notebook()

    async with (
        gateway.socket(notebook.id) as first,
        gateway.socket(notebook.id) as second,
    ):
        await receive(first)
        await receive(second)
        await send(first, type="create_cell", id="c1", code="z = 3")
        _, seen_first = await replies_and_events(first, "c1", "cellCreated")
        seen_second = await receive_until(second, "notebook_event")

    assert seen_second == seen_first


async def test_run_cells_replies_when_the_run_ends_and_events_arrive_once(
    gateway: Gateway,
) -> None:
    notebook = await gateway.notebook()
    cell_id = await cell(gateway, notebook.id)

    async with gateway.socket(notebook.id) as socket:
        await receive(socket)
        await asyncio.wait_for(
            gateway.backends.execution.wait_for_watchers(notebook.id, 1), 5
        )
        await send(socket, type="run_cells", id="r1", cellIds=[cell_id])
        reply, finished = await replies_and_events(socket, "r1", "runFinished")

    assert reply["result"] == {"runId": "run1", "status": "CELL_STATUS_SUCCESS"}
    assert finished["type"] == "execution_event"
    assert finished["event"]["runId"] == "run1"


async def test_run_events_are_not_sent_twice(gateway: Gateway) -> None:
    notebook = await gateway.notebook()
    cell_id = await cell(gateway, notebook.id)

    async with gateway.socket(notebook.id) as socket:
        await receive(socket)
        await asyncio.wait_for(
            gateway.backends.execution.wait_for_watchers(notebook.id, 1), 5
        )
        await send(socket, type="run_cells", id="r1", cellIds=[cell_id])
        messages = [await receive(socket) for _ in range(4)]  # 3 events + reply
        await send(socket, type="ping", id="after")
        pong = await receive(socket)

    assert sorted(m["type"] for m in messages) == [
        "execution_event",
        "execution_event",
        "execution_event",
        "reply",
    ]
    assert pong["type"] == "pong"


async def test_interrupt_is_answered(gateway: Gateway) -> None:
    notebook = await gateway.notebook()

    async with gateway.socket(notebook.id) as socket:
        await receive(socket)
        await send(socket, type="interrupt", id="i1")
        reply = await receive_until(socket, "reply")

    assert reply == {"type": "reply", "id": "i1", "ok": True, "result": {}}
    assert gateway.backends.execution.metadata_of("InterruptKernel")["user"] == "alice"


async def test_restart_replies_with_the_fresh_kernel(gateway: Gateway) -> None:
    notebook = await gateway.notebook()

    async with gateway.socket(notebook.id) as socket:
        await receive(socket)
        await send(socket, type="restart", id="k1")
        reply = await receive_until(socket, "reply")

    assert reply["result"]["kernel"]["notebookId"] == notebook.id


# -- slow clients -----------------------------------------------------------------


@contextlib.asynccontextmanager
async def slow_client(
    gateway: Gateway, notebook_id: str
) -> AsyncIterator[ClientConnection]:
    """A socket that holds little unread: a small receive buffer (which also
    stops the kernel growing it), no compression, one message queued in the
    client library."""
    raw = socket_module.socket()
    raw.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_RCVBUF, 64 * 1024)
    raw.connect(("127.0.0.1", gateway.http_port))
    raw.setblocking(False)
    url = gateway.ws_url(notebook_id)
    async with connect(url, sock=raw, compression=None, max_queue=1) as socket:
        yield socket


@pytest.mark.parametrize(
    "ws_settings", [WebSocketSettings(queue_size=4)], indirect=True
)
async def test_client_that_does_not_read_is_closed_when_its_queue_overflows(
    gateway: Gateway,
) -> None:
    notebook = await gateway.notebook()
    cell_id = await cell(gateway, notebook.id)
    padding = "x" * (256 * 1024)

    async with slow_client(gateway, notebook.id) as socket:
        await send(socket, type="auth", token=gateway.token())
        hub = gateway.backends.hub
        await asyncio.wait_for(hub.wait_for_watchers(notebook.id, 1), 5)
        # Edit until the gateway gives up on the socket (it then stops
        # watching the notebook): the client reads nothing meanwhile, so the
        # socket's buffers fill and the gateway's queue overflows, however
        # fast or slow this machine is. 32 MiB in all is far more than needed.
        for number in range(128):
            if hub.watcher_count(notebook.id) == 0:
                break
            await gateway.backends.manager.update_cell(
                "alice",
                NotebookId(notebook.id),
                CellId(cell_id),
                f"# {number} {padding}",
                None,
                0,
            )
        await asyncio.wait_for(hub.wait_for_watchers(notebook.id, 0), 30)
        closed = await close_of(socket)

    assert closed == (1013, "client too slow: more than 4 messages waiting")
