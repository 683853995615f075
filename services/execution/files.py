"""A notebook's files in its kernel's working directory (the service's side).

The notebook service keeps a notebook's files; the kernel works on a copy
in its own working directory (`kernel/workdir.py`). This service carries
files between the two over gRPC and the kernel protocol, and never touches
the kernel's directory itself, so nothing a cell plants there (a symbolic
link to another notebook's files, a fifo, a hard link) is ever followed by a
service.

* **Into the kernel.** At the start of every run, `sync` takes the
  listing of the notebook's files that came with the notebook itself (the
  run's GetNotebook asks for it, so a run costs no extra call) and sends
  the kernel those it does not have in that version: all of them for a new
  kernel, after opening its working directory; afterwards whatever was
  uploaded, replaced or deleted through the API since the last run.
* **Out of the kernel.** After each cell the kernel reports the regular
  files the cell added, changed or deleted (nothing when nothing changed).
  `store` puts each on the notebook service with the owner's identity, so
  the notebook service checks its path and the size caps exactly as for an
  upload; a refusal becomes a note on the cell's stderr, and nothing is
  stored for that file.

Kernel output is untrusted: a reported path is only ever a request to the
notebook service, a reported size never above the limit is believed only
after counting the bytes, and notes quote a path cut short.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from reflow.execution.v1 import kernel_pb2
from services.shared.errors import NotFound, ServiceError

if TYPE_CHECKING:
    from reflow.notebook.v1 import notebook_pb2
    from services.execution.clients import NotebookClient
    from services.execution.lifecycle import Kernel
    from services.shared.auth import InternalTokens

logger = logging.getLogger(__name__)

# Used when the notebook service does not say (an older one).
DEFAULT_MAX_FILE_BYTES: Final = 8 * 1024 * 1024
_MAX_QUOTED_PATH: Final = 120

# What the kernel has of a file: its size and update time on the notebook
# service when it was sent or stored.
_Version = tuple[int, int]


@dataclass(frozen=True)
class FileListing:
    """The notebook's files as the notebook service listed them."""

    files: tuple[notebook_pb2.NotebookFile, ...]
    max_file_bytes: int

    @classmethod
    def of(
        cls,
        reply: notebook_pb2.GetNotebookResponse | notebook_pb2.ListFilesResponse,
    ) -> FileListing:
        return cls(tuple(reply.files), reply.max_file_bytes or DEFAULT_MAX_FILE_BYTES)


class WorkdirSync:
    """Makes the per-notebook file carriers, with what they all share."""

    def __init__(
        self, client: NotebookClient, tokens: InternalTokens, *, confined: bool
    ) -> None:
        self._client = client
        self._tokens = tokens
        self._confined = confined

    def for_notebook(self, owner: str, notebook_id: str) -> NotebookFiles:
        return NotebookFiles(
            self._client, self._tokens, owner, notebook_id, confined=self._confined
        )


class NotebookFiles:
    """One notebook's files, as its current kernel has them."""

    def __init__(
        self,
        client: NotebookClient,
        tokens: InternalTokens,
        owner: str,
        notebook_id: str,
        *,
        confined: bool,
    ) -> None:
        self._client = client
        self._tokens = tokens
        self._owner = owner
        self._notebook_id = notebook_id
        self._confined = confined
        self._kernel: Kernel | None = None
        self._known: dict[str, _Version] = {}
        self._max_file_bytes = DEFAULT_MAX_FILE_BYTES

    async def sync(self, kernel: Kernel, listing: FileListing | None) -> None:
        """Bring the kernel's working directory up to the notebook's files
        (listed again when the run came without a listing)."""
        token = self._tokens.token_for(self._owner)
        if listing is None:
            reply = await self._client.list_files(token, self._notebook_id)
            listing = FileListing.of(reply)
        self._max_file_bytes = listing.max_file_bytes
        if kernel is not self._kernel:
            self._kernel, self._known = None, {}
            opened = await kernel.workdir(
                kernel_pb2.WorkdirRequest(
                    open=kernel_pb2.OpenWorkdir(
                        confined=self._confined, max_file_bytes=self._max_file_bytes
                    )
                )
            )
            if opened.error:
                logger.warning(
                    "the kernel of notebook %s could not open its working "
                    "directory: %s",
                    self._notebook_id,
                    opened.error[:200],
                )
                return
            self._kernel = kernel
        wanted = {file.path: _version(file) for file in listing.files}
        for path, version in wanted.items():
            if self._known.get(path) != version:
                await self._send(kernel, token, path)
        for path in [path for path in self._known if path not in wanted]:
            await kernel.workdir(
                kernel_pb2.WorkdirRequest(
                    remove=kernel_pb2.RemoveWorkdirFile(path=path)
                )
            )
            del self._known[path]

    async def store(self, change: kernel_pb2.FileChanged) -> str:
        """Store what a cell did to one file; a note for the user if refused."""
        path = change.path
        token = self._tokens.token_for(self._owner)
        if change.deleted:
            self._known.pop(path, None)
            try:
                await self._client.delete_file(token, self._notebook_id, path)
            except NotFound:
                pass  # never stored (refused), or deleted through the API too
            except ServiceError as error:
                return f"{_quoted(path)} was not deleted from the notebook: {error}"
            return ""
        size = len(change.content)
        if change.too_large or size > self._max_file_bytes:
            size = max(size, change.size_bytes)
            return (
                f"{_quoted(path)} was not saved with the notebook: its {size} bytes "
                f"are more than the {self._max_file_bytes} a file may hold"
            )
        try:
            stored = await self._client.put_file(
                token, self._notebook_id, path, change.content
            )
        except ServiceError as error:
            return f"{_quoted(path)} was not saved with the notebook: {error}"
        self._known[path] = _version(stored)
        return ""

    async def _send(self, kernel: Kernel, token: str, path: str) -> None:
        try:
            reply = await self._client.get_file(token, self._notebook_id, path)
        except NotFound:
            return  # deleted since it was listed
        done = await kernel.workdir(
            kernel_pb2.WorkdirRequest(
                write=kernel_pb2.WriteWorkdirFile(path=path, content=reply.content)
            )
        )
        if done.error:
            logger.warning(
                "the kernel of notebook %s could not write a file: %s",
                self._notebook_id,
                done.error[:200],
            )
            return
        self._known[path] = _version(reply.file)


def _version(file: notebook_pb2.NotebookFile) -> _Version:
    return file.size_bytes, file.update_time.ToNanoseconds()


def _quoted(path: str) -> str:
    if len(path) > _MAX_QUOTED_PATH:
        path = path[:_MAX_QUOTED_PATH] + "…"
    return repr(path)
