"""A scripted OpenAI-compatible server on loopback, for driving the real client.

It serves ``POST /v1/chat/completions`` the way OpenAI streams: an HTTP/1.1
response of ``text/event-stream`` in chunked encoding, one ``data: {...}``
event per ``chat.completion.chunk``, a usage chunk, then ``data: [DONE]``.
Each request takes the next ``Reply`` of the script (or calls the next
function of it with the request, to answer with what an earlier tool result
said); with the script empty it answers a short text. Every request is kept
(``requests``: the JSON bodies, so tests can check the messages and tools the
model was sent; ``headers``), and ``disconnected`` is set when a client hangs
up on a reply that was still streaming.

Replies can misbehave on purpose: leave out ``[DONE]``, repeat ``id`` and
``name`` in every tool-call fragment, leave out ``index``, send arguments as
a JSON object, break the connection mid-stream, send an error event, answer
with an HTTP error, or keep the stream open until the client leaves.

A plain asyncio server rather than an ASGI app, so that those failures are
real: a connection closed before the last chunk is what a crashed proxy does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

MODEL: Final = "scripted-model"


@dataclass
class Reply:
    """One scripted response."""

    # The data of each SSE event, in order.
    events: list[dict[str, Any]] = field(default_factory=list)
    done: bool = True
    # Non-200: answer with this status and an OpenAI-style error body.
    status: int = 200
    # After the events: close the connection without ending the body.
    break_connection: bool = False
    # After the events: keep the stream open until the client hangs up.
    hang: bool = False


Script: TypeAlias = Reply | Callable[[dict[str, Any]], Reply]


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    """A chat.completion.chunk with one choice."""
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def usage_chunk(prompt: int = 10, completion: int = 5) -> dict[str, Any]:
    """The last chunk when stream_options.include_usage is set: no choices."""
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": MODEL,
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def text(*pieces: str, finish_reason: str = "stop", **options: Any) -> Reply:
    """A reply that writes ``pieces`` one chunk each."""
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": piece}) for piece in pieces]
    events += [chunk({}, finish_reason), usage_chunk()]
    return Reply(events, **options)


@dataclass(frozen=True)
class Call:
    """A tool call to script: its id, tool name and arguments."""

    id: str
    name: str
    arguments: dict[str, Any]


def tool_calls(
    *calls: Call,
    pieces: int = 3,
    repeat_id_and_name: bool = False,
    with_index: bool = True,
    with_id: bool = True,
    arguments_as_object: bool = False,
    text_first: str = "",
    finish_reason: str = "tool_calls",
    **options: Any,
) -> Reply:
    """A reply calling tools, each call's arguments split over ``pieces`` chunks."""
    events = [chunk({"role": "assistant", "content": text_first or None})]
    for index, call in enumerate(calls):
        head: dict[str, Any] = {"type": "function", "function": {"name": call.name}}
        if with_id:
            head["id"] = call.id
        if with_index:
            head["index"] = index
        if arguments_as_object:
            head["function"]["arguments"] = call.arguments
            events.append(chunk({"tool_calls": [head]}))
            continue
        head["function"]["arguments"] = ""
        events.append(chunk({"tool_calls": [head]}))
        encoded = json.dumps(call.arguments)
        size = max(1, -(-len(encoded) // pieces))
        for start in range(0, len(encoded), size):
            fragment: dict[str, Any] = {
                "function": {"arguments": encoded[start : start + size]}
            }
            if with_index:
                fragment["index"] = index
            if repeat_id_and_name:
                fragment["id"] = call.id
                fragment["type"] = "function"
                fragment["function"]["name"] = call.name
            events.append(chunk({"tool_calls": [fragment]}))
    events += [chunk({}, finish_reason), usage_chunk()]
    return Reply(events, **options)


def tool_call(name: str, call_id: str = "call_1", **arguments: Any) -> Reply:
    """A reply making one tool call."""
    return tool_calls(Call(call_id, name, arguments))


class ScriptedModelServer:
    """The server; ``url`` is what OPENAI_BASE_URL should be."""

    def __init__(self, *replies: Script) -> None:
        self.script: deque[Script] = deque(replies)
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.disconnected = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    def add(self, *replies: Script) -> None:
        self.script.extend(replies)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        request_line = await reader.readline()
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        if b"/chat/completions" not in request_line:
            writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
            return
        request = json.loads(body)
        self.requests.append(request)
        self.headers.append(headers)
        scripted = self.script.popleft() if self.script else text("(no script)")
        reply = scripted if isinstance(scripted, Reply) else scripted(request)
        await self._send(reply, reader, writer)

    async def _send(
        self, reply: Reply, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if reply.status != 200:
            body = json.dumps(
                {"error": {"message": "scripted failure", "type": "server_error"}}
            ).encode()
            writer.write(
                f"HTTP/1.1 {reply.status} Scripted\r\ncontent-type: application/json"
                f"\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
                + body
            )
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        )
        for event in reply.events:
            _write_chunk(writer, f"data: {json.dumps(event)}\n\n".encode())
            await writer.drain()
        if reply.hang:
            # Until the client hangs up: read() returns b"" at end of stream.
            await reader.read()
            self.disconnected.set()
            return
        if reply.break_connection:
            writer.transport.abort()
            return
        if reply.done:
            _write_chunk(writer, b"data: [DONE]\n\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()


def _write_chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


class ThreadedModelServer:
    """A ScriptedModelServer on a thread of its own, for synchronous tests."""

    def __init__(self) -> None:
        self.server = ScriptedModelServer()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> ScriptedModelServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(10)
        return self.server

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
