"""The message pump of one authenticated WebSocket: gRPC streams out, commands in.

Once ``ws.py`` has validated a connection, a ``NotebookBridge`` runs these
tasks in one TaskGroup until the socket ends:

* **notebook pump** — WatchNotebook from a snapshot; each response goes out
  as ``{"type": "notebook_event", "event": ...}``. The snapshot is always the
  first event a client gets.
* **execution pump** — WatchExecution, opened at once (so no run's events
  fall between the snapshot and the watch) but relayed only after the
  snapshot, as ``{"type": "execution_event", "event": <ExecutionEvent>}``.
* **receiver** — parses client messages, answers ``ping`` with ``pong``,
  queues ordered commands and starts the others (see ``commands.py``).
* **ordered lane** — runs edits and ``run_cells`` one at a time, in order.
* **sender** — the only task that writes to the socket.

Everything bound for the client goes through one bounded outbox (a queue of
serialized messages, ``queue_size`` long). Producers never wait for a slow
client: when the outbox is full, the socket is closed with 1013 ("try again
later") and a reason, so the gateway's memory per socket stays bounded
whatever the client does.

``chat`` relays its Chat stream, each response as ``{"type": "chat_event",
"id": <request id>, "event": <ChatResponse>}``, and is answered when the
turn ends: ``{"conversationId": ...}``, or an error reply with the code and
message of the turn's ChatError (or of the call's failure).

``run_cells`` does not relay its RunCells stream: the run's events reach the
client through WatchExecution like any other run's, so relaying them would
send each twice. The command is answered when the run ends, with
``{"runId": ..., "status": "CELL_STATUS_SUCCESS"|...}``, or with the error
the run was refused with; meanwhile later commands go ahead (the lane only
waits for the run to be sent).

A watch stream that fails ends the socket: the client is sent
``{"type": "error", "error": {...}}``, then the socket is closed with a code
that says what to do (4404 notebook not found, 4401/4403 not allowed, 4400
bad request, 1013 try again later, 1011 otherwise). When the notebook is
deleted the socket closes normally (1000).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any, Final

import grpc
from starlette.websockets import WebSocketDisconnect

from reflow.notebook.v1 import notebook_pb2
from services.gateway import convert
from services.gateway.commands import command_named
from services.gateway.errors import ServiceNotConfigured
from services.shared.errors import InvalidArgument, ResourceExhausted, ServiceError

if TYPE_CHECKING:
    from google.protobuf.message import Message
    from google.rpc.status_pb2 import Status
    from starlette.websockets import WebSocket

    from services.gateway.clients import UserCalls
    from services.gateway.commands import Command

logger = logging.getLogger(__name__)

MAX_PENDING_COMMANDS: Final = 256
"""Ordered commands waiting their turn, and unordered ones (and runs) in flight."""

MAX_REASON_BYTES: Final = 123
"""A close frame's reason is at most 123 bytes of UTF-8 (RFC 6455 §5.5)."""

CLOSE_CODES: Final = {
    grpc.StatusCode.INVALID_ARGUMENT: 4400,
    grpc.StatusCode.UNAUTHENTICATED: 4401,
    grpc.StatusCode.PERMISSION_DENIED: 4403,
    grpc.StatusCode.NOT_FOUND: 4404,
    grpc.StatusCode.UNAVAILABLE: 1013,
    grpc.StatusCode.DEADLINE_EXCEEDED: 1013,
}
INTERNAL_ERROR: Final = 1011
TOO_DEEP: Final = "a message must be JSON nested less than 1,000 levels deep"
TRY_AGAIN_LATER: Final = 1013
SERVICE_RESTART: Final = 1012


class SocketClosing(Exception):
    """Ends the bridge; ``code`` None means the client is already gone."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def close_socket(socket: WebSocket, code: int, reason: str) -> None:
    """Close with ``code`` and ``reason`` (cut to fit), unless already closed."""
    fitted = reason.encode()[:MAX_REASON_BYTES].decode(errors="ignore")
    try:
        await socket.close(code, fitted)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client left first: there is nobody to tell


class NotebookBridge:
    """Relays one notebook's events to a socket and the socket's commands to RPCs."""

    def __init__(self, socket: WebSocket, calls: UserCalls, queue_size: int) -> None:
        self._socket = socket
        self._calls = calls
        self._queue_size = queue_size
        self._outbox: asyncio.Queue[str | SocketClosing] = asyncio.Queue(queue_size)
        self._ordered: asyncio.Queue[tuple[Command, object, Message]] = asyncio.Queue(
            MAX_PENDING_COMMANDS
        )
        self._snapshot_sent = asyncio.Event()
        self._in_flight = 0
        self._tasks: asyncio.TaskGroup | None = None

    async def run(self) -> None:
        """Pump until the client leaves or the socket must close; then close it."""
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                tasks.create_task(self._send_loop())
                tasks.create_task(self._pump_notebook())
                tasks.create_task(self._pump_execution())
                tasks.create_task(self._run_ordered())
                tasks.create_task(self._receive_loop())
        except* SocketClosing as group:
            closing = _first(group)
            if closing.code is not None:
                await close_socket(self._socket, closing.code, closing.reason)

    # -- outgoing ------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        """Queue ``message`` for the client; close the socket if it is too slow."""
        try:
            self._outbox.put_nowait(json.dumps(message, separators=(",", ":")))
        except asyncio.QueueFull:
            logger.info(
                "closing a socket on notebook %s: over %d messages waiting",
                self._calls.notebook_id,
                self._queue_size,
            )
            raise SocketClosing(
                TRY_AGAIN_LATER,
                f"client too slow: more than {self._queue_size} messages waiting",
            ) from None

    def _finish(self, code: int, reason: str) -> None:
        """Close the socket once everything queued before has been sent."""
        try:
            self._outbox.put_nowait(SocketClosing(code, reason))
        except asyncio.QueueFull:
            raise SocketClosing(code, reason) from None

    async def _send_loop(self) -> None:
        while True:
            item = await self._outbox.get()
            if isinstance(item, SocketClosing):
                raise item
            try:
                await self._socket.send_text(item)
            except WebSocketDisconnect:
                raise SocketClosing(None) from None

    # -- watch streams ----------------------------------------------------------

    async def _pump_notebook(self) -> None:
        call = self._calls.watch_notebook()
        try:
            async for response in call:
                self._send(convert.notebook_event(response))
                self._snapshot_sent.set()
        except grpc.aio.AioRpcError as error:
            self._fail(error, "notebook")
            return
        finally:
            call.cancel()
        self._finish(1000, "the notebook was deleted")

    async def _pump_execution(self) -> None:
        call = self._calls.watch_execution()
        try:
            await self._snapshot_sent.wait()
            async for response in call:
                self._send(convert.execution_event(response.event))
        except grpc.aio.AioRpcError as error:
            self._fail(error, "execution")
            return
        finally:
            call.cancel()
        self._finish(SERVICE_RESTART, "the execution service ended the stream")

    def _fail(self, error: grpc.aio.AioRpcError, service: str) -> None:
        status = convert.status_of_rpc_error(error, service)
        self._send(convert.stream_error(status))
        code = CLOSE_CODES.get(error.code(), INTERNAL_ERROR)
        self._finish(code, f"{error.code().name}: {status.message}")

    # -- incoming ---------------------------------------------------------------

    async def _receive_loop(self) -> None:
        while True:
            message = await self._socket.receive()
            if message["type"] == "websocket.disconnect":
                raise SocketClosing(None)
            text = message.get("text")
            if text is None:
                self._reply_error(None, InvalidArgument("send text frames of JSON"))
                continue
            self._dispatch(text)

    def _dispatch(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            self._reply_error(None, InvalidArgument("a message must be JSON"))
            return
        except RecursionError:
            self._reply_error(None, InvalidArgument(TOO_DEEP))
            return
        if not isinstance(message, dict):
            self._reply_error(None, InvalidArgument("a message must be a JSON object"))
            return
        request_id = message.get("id")
        if message.get("type") == "ping":
            self._send({"type": "pong", "id": request_id})
            return
        try:
            command = command_named(message.get("type"))
            if not self._calls.serves(command.method):
                raise ServiceNotConfigured("assistant", "ASSISTANT_SERVICE_ADDR")
            request = command.request(message, self._calls.notebook_id)
        except ServiceError as error:
            self._reply_error(request_id, error)
            return
        self._schedule(command, request_id, request)

    def _schedule(self, command: Command, request_id: object, request: Message) -> None:
        if command.ordered:
            try:
                self._ordered.put_nowait((command, request_id, request))
            except asyncio.QueueFull:
                self._reply_error(request_id, _too_many())
            return
        self._start(self._call(command, request_id, request), request_id)

    def _start(self, work: Any, request_id: object) -> None:
        """Run ``work`` (a coroutine) beside the others, if not too many are."""
        if self._in_flight >= MAX_PENDING_COMMANDS:
            work.close()
            self._reply_error(request_id, _too_many())
            return
        self._in_flight += 1
        assert self._tasks is not None
        task = self._tasks.create_task(work)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight -= 1

    async def _run_ordered(self) -> None:
        while True:
            command, request_id, request = await self._ordered.get()
            if command.streams:
                # Sent now, in order; followed to its end beside the lane.
                call = self._calls.stream(
                    command.method, request, command.response_type
                )
                if command.event_type is None:
                    follow = self._follow_run(call, request_id)
                else:
                    follow = self._relay_chat(call, request_id, command.event_type)
                self._start(follow, request_id)
            else:
                await self._call(command, request_id, request)

    async def _call(
        self, command: Command, request_id: object, request: Message
    ) -> None:
        call = self._calls.unary(command.method, request, command.response_type)
        try:
            response = await call
        except grpc.aio.AioRpcError as error:
            service = self._calls.service_name(command.method)
            status = convert.status_of_rpc_error(error, service)
            self._send(convert.error_reply(request_id, status))
            return
        self._send(convert.reply(request_id, convert.message_json(response)))

    async def _follow_run(
        self, call: grpc.aio.UnaryStreamCall[Any, Any], request_id: object
    ) -> None:
        run_id = ""
        status = notebook_pb2.CELL_STATUS_UNSPECIFIED
        try:
            async for response in call:
                event = response.event
                run_id = run_id or event.run_id
                if event.HasField("run_finished"):
                    status = event.run_finished.status
        except grpc.aio.AioRpcError as error:
            failure = convert.status_of_rpc_error(error, "execution")
            self._send(convert.error_reply(request_id, failure))
            return
        finally:
            call.cancel()
        result = {"runId": run_id, "status": notebook_pb2.CellStatus.Name(status)}
        self._send(convert.reply(request_id, result))

    async def _relay_chat(
        self,
        call: grpc.aio.UnaryStreamCall[Any, Any],
        request_id: object,
        event_type: str,
    ) -> None:
        conversation_id = ""
        failure: Status | None = None
        try:
            async for response in call:
                self._send(
                    {
                        "type": event_type,
                        "id": request_id,
                        "event": convert.message_json(response),
                    }
                )
                if response.HasField("conversation_started"):
                    conversation_id = response.conversation_started.conversation_id
                elif response.HasField("error"):
                    failure = convert.status_of_chat_error(response.error)
        except grpc.aio.AioRpcError as error:
            failure = convert.status_of_rpc_error(error, "assistant")
        finally:
            call.cancel()
        if failure is not None:
            self._send(convert.error_reply(request_id, failure))
        else:
            self._send(convert.reply(request_id, {"conversationId": conversation_id}))

    def _reply_error(self, request_id: object, error: ServiceError) -> None:
        self._send(convert.error_reply(request_id, convert.status_of_error(error)))


def _first(group: BaseExceptionGroup[SocketClosing]) -> SocketClosing:
    """The first of the (possibly nested) closings in ``group``."""
    first = group.exceptions[0]
    return first if isinstance(first, SocketClosing) else _first(first)


def _too_many() -> ResourceExhausted:
    return ResourceExhausted(
        f"more than {MAX_PENDING_COMMANDS} commands are waiting; slow down"
    )
