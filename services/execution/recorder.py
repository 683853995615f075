"""Persisting finished cells on the notebook service, off the live path.

A run streams its events to the caller at once; storing each result on the
notebook service happens here, in one background task, so a slow notebook
service never delays a cell's events and an unavailable one never breaks a
run. Pending results are keyed by (notebook, cell): a newer result of the
same cell replaces one not yet sent, which bounds what waits here by the
number of cells. What waits for one notebook goes in one RecordCellResults
call (up to a size limit): a chain of ten quick cells is one round trip to
the notebook service, not ten in a row.

The end of a run does wait (`settled`, with a time limit): a run reports
itself finished only once its results are stored, so a client that reads
the notebook after a run's stream ended reads what the stream reported.

Results are recorded with a token minted for the notebook's owner at send
time: the caller's own token may have expired by the time a long run ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import TYPE_CHECKING

from services.shared.errors import ServiceError

if TYPE_CHECKING:
    from reflow.notebook.v1 import notebook_pb2
    from services.execution.clients import NotebookClient
    from services.shared.auth import InternalTokens

logger = logging.getLogger(__name__)

_Key = tuple[str, str]

BATCH_BYTES = 1024 * 1024
"""Results sent in one call, at most (one larger result goes alone): well
under gRPC's 4 MiB message limit."""


class ResultRecorder:
    """Sends cell results to the notebook service in the order they finished."""

    def __init__(self, client: NotebookClient, tokens: InternalTokens) -> None:
        self._client = client
        self._tokens = tokens
        self._pending: OrderedDict[_Key, tuple[str, notebook_pb2.CellResult]] = (
            OrderedDict()
        )
        self._wakeup = asyncio.Event()
        # The notebook whose results are being sent.
        self._sending: str | None = None
        # Set (and replaced) each time a send ends, for `settled` to wait on.
        self._sent = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    def record(
        self,
        owner: str,
        notebook_id: str,
        cell_id: str,
        result: notebook_pb2.CellResult,
    ) -> None:
        """Queue a result; returns at once."""
        key = (notebook_id, cell_id)
        self._pending.pop(key, None)
        self._pending[key] = (owner, result)
        self._idle.clear()
        self._wakeup.set()
        if self._task is None:
            self._task = asyncio.create_task(self._send_forever())

    async def settled(self, notebook_id: str, timeout_s: float) -> None:
        """Wait until no result of the notebook is queued or being sent;
        TimeoutError after `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            while self._waiting_for(notebook_id):
                await self._sent.wait()

    def _waiting_for(self, notebook_id: str) -> bool:
        if self._sending == notebook_id:
            return True
        return any(key[0] == notebook_id for key in self._pending)

    async def wait_idle(self, timeout_s: float = 10.0) -> None:
        """Wait until every queued result has been sent (or given up on)."""
        await asyncio.wait_for(self._idle.wait(), timeout_s)

    async def close(self) -> None:
        """Send what is queued (briefly), then stop."""
        try:
            await self.wait_idle(timeout_s=5.0)
        except TimeoutError:
            logger.warning("dropping %d unrecorded cell results", len(self._pending))
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _send_forever(self) -> None:
        while True:
            if not self._pending:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            notebook_id, owner, batch = self._next_batch()
            self._sending = notebook_id
            try:
                await self._client.record_results(
                    self._tokens.token_for(owner), notebook_id, batch
                )
            except ServiceError as error:
                logger.warning(
                    "could not record the results of %d cells in notebook %s: %s",
                    len(batch),
                    notebook_id,
                    error,
                )
            except Exception:
                logger.exception(
                    "unexpected error recording %d results of notebook %s",
                    len(batch),
                    notebook_id,
                )
            finally:
                self._sending = None
                sent, self._sent = self._sent, asyncio.Event()
                sent.set()

    def _next_batch(self) -> tuple[str, str, list[tuple[str, notebook_pb2.CellResult]]]:
        """The oldest result's notebook, owner, and its pending results (in
        the order they finished), taken off the queue up to BATCH_BYTES."""
        (notebook_id, _), (owner, _) = next(iter(self._pending.items()))
        batch: list[tuple[str, notebook_pb2.CellResult]] = []
        size = 0
        for key, (key_owner, result) in list(self._pending.items()):
            if key[0] != notebook_id or key_owner != owner:
                continue
            size += result.ByteSize()
            if batch and size > BATCH_BYTES:
                break
            del self._pending[key]
            batch.append((key[1], result))
        return notebook_id, owner, batch
