"""The WebSocket bridge through Envoy: auth first, edits and runs, shared events."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any, Final

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.stack.stack_process import RunningStack

TIMEOUT_S: Final = 60.0
Message = dict[str, Any]


def socket_url(stack: RunningStack, notebook_id: str) -> str:
    return f"ws://127.0.0.1:{stack.http_port}/ws/notebooks/{notebook_id}"


def new_notebook(stack: RunningStack, token: str) -> str:
    response = httpx.post(
        f"{stack.base_url}/api/v1/notebooks",
        json={"name": "WebSocket"},
        headers={"authorization": f"Bearer {token}"},
        timeout=TIMEOUT_S,
    )
    response.raise_for_status()
    notebook_id: str = response.json()["notebook"]["id"]
    return notebook_id


async def receive(socket: ClientConnection) -> Message:
    message: Message = json.loads(await asyncio.wait_for(socket.recv(), TIMEOUT_S))
    return message


async def receive_until(
    socket: ClientConnection, *wanted: Callable[[Message], bool]
) -> list[Message]:
    """Every message until each of ``wanted`` has accepted one."""
    received: list[Message] = []
    missing = list(wanted)
    while missing:
        received.append(await receive(socket))
        missing = [test for test in missing if not test(received[-1])]
    return received


async def signed_in(
    stack: RunningStack, notebook_id: str, token: str
) -> ClientConnection:
    """An authenticated socket whose snapshot has been read."""
    socket = await connect(socket_url(stack, notebook_id), open_timeout=TIMEOUT_S)
    await socket.send(json.dumps({"type": "auth", "token": token}))
    first = await receive(socket)
    assert first["type"] == "notebook_event"
    assert "snapshot" in first["event"]
    return socket


def is_reply(request_id: int) -> Callable[[Message], bool]:
    return lambda message: message["type"] == "reply" and message["id"] == request_id


def run_events(messages: list[Message], run_id: str) -> list[Message]:
    return [
        m["event"]
        for m in messages
        if m["type"] == "execution_event" and m["event"].get("runId") == run_id
    ]


def run_finished(message: Message) -> bool:
    return message["type"] == "execution_event" and "runFinished" in message["event"]


async def test_edit_and_run_reach_every_socket_on_the_notebook(
    stack: RunningStack,
) -> None:
    token = stack.token("ada")
    notebook_id = new_notebook(stack, token)
    author = await signed_in(stack, notebook_id, token)
    watcher = await signed_in(stack, notebook_id, token)
    try:
        await author.send(json.dumps({"type": "create_cell", "id": 1, "code": "y = 0"}))
        created = await receive_until(author, is_reply(1))
        cell_id = created[-1]["result"]["cell"]["id"]
        code = "y = 20\nprint(y * 2)\ny + 1"
        update = {"type": "update_cell", "id": 2, "cellId": cell_id, "code": code}
        await author.send(json.dumps(update))
        await receive_until(author, is_reply(2))
        await author.send(
            json.dumps({"type": "run_cells", "id": 3, "cellIds": [cell_id]})
        )

        by_author = await receive_until(author, is_reply(3), run_finished)
        by_watcher = await receive_until(watcher, run_finished)
    finally:
        await author.close()
        await watcher.close()

    run_id = next(m for m in by_author if is_reply(3)(m))["result"]["runId"]
    events = run_events(by_author, run_id)
    stdout = [e["streamChunk"]["text"] for e in events if "streamChunk" in e]
    outputs = [e["output"] for e in events if "output" in e]
    statuses = [
        e["cellFinished"]["result"]["status"] for e in events if "cellFinished" in e
    ]
    # Printed text arrives in batches, which may split a line: compare text.
    assert "".join(stdout) == "40\n"
    assert outputs == [{"mimeType": "text/plain", "text": "21"}]
    assert statuses == ["CELL_STATUS_SUCCESS"]
    assert run_events(by_watcher, run_id) == events
    assert any(
        m["type"] == "notebook_event" and "cellUpdated" in m["event"]
        for m in by_watcher
    )


async def test_bad_token_closes_the_socket_as_unauthorized(stack: RunningStack) -> None:
    notebook_id = new_notebook(stack, stack.token("ada"))
    socket = await connect(socket_url(stack, notebook_id), open_timeout=TIMEOUT_S)
    await socket.send(json.dumps({"type": "auth", "token": "not-a-token"}))

    with pytest.raises(ConnectionClosed) as closed:
        await receive(socket)

    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401
