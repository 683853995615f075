"""Reacting to notebook edits that change what the kernel should hold.

Cells are edited on the notebook service, which never calls this service.
So for every notebook with a live kernel the execution service follows the
notebook's change stream, and queues a run (with no cells of its own) on
the current notebook when an edit calls for one. That run's tidying step
(runner.py, `_tidy`) does the work:

* a cell that ran in the kernel is deleted: its names go, and what depended
  on it re-runs;
* a disabled cell that ran is edited, or one that held a name another cell
  defines too: its old names go;
* the notebook is deleted: its kernel is stopped;
* while cells are held (kept from running by a multiple definition, a
  cycle, or a disabled cell), any cell edit or deletion may have resolved
  what held them: those that can run now run again (automatic mode) or are
  marked stale (lazy mode).

The stream is opened with a token minted for the notebook's owner, since it
outlives any caller's request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from reflow.notebook.v1 import notebook_pb2
from services.execution.files import FileListing
from services.execution.runs import RunRequest
from services.shared.errors import NotFound, ServiceError

if TYPE_CHECKING:
    from services.execution.clients import NotebookClient
    from services.execution.session import Session
    from services.shared.auth import InternalTokens

logger = logging.getLogger(__name__)

_MAX_BACKOFF_S = 10.0
_MULTIPLE_DEFINITION = notebook_pb2.AnalysisError.KIND_MULTIPLE_DEFINITION


class ChangeFollower:
    """One change-stream task per notebook with a live kernel."""

    def __init__(self, client: NotebookClient, tokens: InternalTokens) -> None:
        self._client = client
        self._tokens = tokens
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def follow(self, session: Session) -> None:
        """Start following the session's notebook, if not already."""
        task = self._tasks.get(session.notebook_id)
        if task is None or task.done():
            self._tasks[session.notebook_id] = asyncio.create_task(
                self._follow(session)
            )

    def forget(self, notebook_id: str) -> None:
        """Stop following a notebook (its kernel is gone)."""
        task = self._tasks.pop(notebook_id, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _follow(self, session: Session) -> None:
        try:
            await self._follow_stream(session)
        finally:
            # Whatever ended the stream, changes may now go unseen.
            session.followed.drop()

    async def _follow_stream(self, session: Session) -> None:
        backoff_s = 0.5
        while session.kernel is not None:
            token = self._tokens.token_for(session.owner)
            try:
                async for change in self._client.watch_notebook(
                    token, session.notebook_id
                ):
                    backoff_s = 0.5
                    session.followed.apply(change)
                    if change.HasField("notebook_deleted"):
                        await self._stop(session)
                        return
                    if _calls_for_a_run(session, change):
                        await self._rerun(session)
                session.followed.drop()
            except NotFound:
                await self._stop(session)  # deleted before we followed it
                return
            except ServiceError as error:
                session.followed.drop()
                logger.info(
                    "following notebook %s failed (%s); retrying in %.1f s",
                    session.notebook_id,
                    error,
                    backoff_s,
                )
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, _MAX_BACKOFF_S)

    async def _stop(self, session: Session) -> None:
        # A deleted notebook's kernel would hold its place (and memory)
        # until idle reaping or eviction: nobody can run it any more.
        logger.info("notebook %s was deleted; stopping its kernel", session.notebook_id)
        await session.shutdown()

    async def _rerun(self, session: Session) -> None:
        """Queue an empty run on the notebook as it is now."""
        token = self._tokens.token_for(session.owner)
        reply = await self._client.get_notebook_and_files(token, session.notebook_id)
        notebook = reply.notebook
        database_url = ""
        if notebook.database_url:
            database_url = await self._client.get_database_url(
                token, session.notebook_id
            )
        session.submit(
            RunRequest(
                cells=frozenset(),
                notebook=notebook,
                database_url=database_url,
                files=FileListing.of(reply),
            )
        )


def _calls_for_a_run(
    session: Session, change: notebook_pb2.WatchNotebookResponse
) -> bool:
    kind = change.WhichOneof("event")
    if kind == "cell_deleted":
        return session.holding or session.has_run([change.cell_deleted.cell_id])
    if kind == "cell_updated":
        cell = change.cell_updated.cell
        contested = cell.analysis_error.kind == _MULTIPLE_DEFINITION
        dropped = cell.disabled or contested
        return session.holding or (dropped and session.has_run([cell.id]))
    return False
