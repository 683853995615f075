"""The kernel's requests, read on a thread of their own.

The main thread runs cells; while it does, it cannot read its socket. So a
reader thread reads every request as it arrives: introspection queries
(completions, variables, table rows) are answered there and then, between
the frames of a running cell's output, and carry their `query_id` back so
the service can match replies to questions; everything else (execute,
delete names, shutdown) waits in order for the main thread (`next`). The end
of the stream reaches the main thread as None.

A query that fails (a bug, or a user object that misbehaves in a way the
introspection code did not foresee) is answered with `query_failed`, never
left unanswered and never allowed to stop the reader.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from reflow.execution.v1 import kernel_pb2
from services.execution.kernel.protocol import ProtocolError

if TYPE_CHECKING:
    from services.execution.kernel.worker import Channel

logger = logging.getLogger(__name__)

QUERIES: Final = frozenset({"completion_query", "variables_query", "table_rows_query"})

Answer = Callable[[kernel_pb2.KernelRequest], kernel_pb2.KernelEvent]


class Inbox:
    """Reads requests; answers queries at once, queues the rest."""

    def __init__(self, channel: Channel, answer: Answer) -> None:
        self._channel = channel
        self._answer = answer
        self._waiting: queue.SimpleQueue[kernel_pb2.KernelRequest | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(
            target=self._read, name="reflow-inbox", daemon=True
        )

    def start(self) -> None:
        """Start reading."""
        self._thread.start()

    def next(self) -> kernel_pb2.KernelRequest | None:
        """The next request for the main thread; None at the end of the stream."""
        return self._waiting.get()

    def _read(self) -> None:
        try:
            while (request := self._channel.receive()) is not None:
                if request.WhichOneof("request") in QUERIES:
                    self._channel.send(self._reply(request))
                else:
                    self._waiting.put(request)
        except (ProtocolError, OSError) as error:
            logger.warning("the kernel's request stream broke: %s", error)
        finally:
            self._waiting.put(None)

    def _reply(self, request: kernel_pb2.KernelRequest) -> kernel_pb2.KernelEvent:
        try:
            reply = self._answer(request)
        except Exception as error:  # noqa: BLE001 - the reply says so instead
            failed = kernel_pb2.QueryFailed(message=f"{type(error).__name__}: {error}")
            reply = kernel_pb2.KernelEvent(query_failed=failed)
        reply.query_id = request.query_id
        return reply
