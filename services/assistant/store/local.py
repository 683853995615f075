"""LocalConversationStore: one JSON document per conversation under a directory.

Layout::

    <data_dir>/conversations/<sha256 of owner>/<conversation id>.json

A conversation lives in its owner's folder, so reading another user's is a
missing file (NOT_FOUND) by construction, and listing a user's is a listing of
one folder. Every file is replaced atomically (temp file in the same folder,
fsync, os.replace, fsync of the folder): a crash leaves the old or the new
conversation, never a torn one.

Listing needs each conversation's notebook, title and times, so the first
listing of a user reads their folder once and keeps the summaries; every save
updates them. One process owns a data directory, as for the notebook store.
File I/O runs in worker threads, and a save runs to completion even when its
caller is cancelled (a client that hangs up must not leave the cache and the
file disagreeing).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import TYPE_CHECKING

from services.assistant.errors import ConversationNotFound
from services.assistant.store import page_of
from services.assistant.store.documents import (
    DocumentError,
    conversation_from_document,
    conversation_to_document,
)
from services.shared.files import write_atomically
from services.shared.patterns import ID

if TYPE_CHECKING:
    import builtins
    from pathlib import Path

    from services.assistant.models import Conversation, ConversationSummary

logger = logging.getLogger(__name__)


class LocalConversationStore:
    """Conversations as JSON files under data_dir/conversations."""

    def __init__(self, data_dir: Path) -> None:
        self._root = data_dir / "conversations"
        self._summaries: dict[str, dict[str, ConversationSummary]] = {}
        self._lock = asyncio.Lock()
        self._in_flight: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        """Wait for saves that outlived their (cancelled) callers."""
        await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def get(self, owner: str, conversation_id: str) -> Conversation:
        # Ids become file names; the service validates them first, this is
        # the store's own guard against "..", "/" and NUL.
        if not ID.fullmatch(conversation_id):
            raise ConversationNotFound(conversation_id)
        path = self._path(owner, conversation_id)
        found = await asyncio.to_thread(_read, path)
        if found is None or found.owner != owner or found.id != conversation_id:
            raise ConversationNotFound(conversation_id)
        return found

    async def save(self, conversation: Conversation) -> None:
        if not ID.fullmatch(conversation.id):
            raise ValueError(f"conversation id {conversation.id!r} cannot name a file")
        task = asyncio.create_task(self._save(conversation))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        await asyncio.shield(task)

    async def list(
        self, owner: str, notebook_id: str, page_size: int, page_token: str
    ) -> tuple[builtins.list[ConversationSummary], str]:
        async with self._lock:
            summaries = await self._owner_summaries(owner)
        return page_of(summaries.values(), owner, notebook_id, page_size, page_token)

    async def _save(self, conversation: Conversation) -> None:
        data = json.dumps(
            conversation_to_document(conversation), ensure_ascii=False
        ).encode("utf-8")
        path = self._path(conversation.owner, conversation.id)
        async with self._lock:
            await asyncio.to_thread(write_atomically, path, data)
            cached = self._summaries.get(conversation.owner)
            if cached is not None:
                cached[conversation.id] = conversation.summary()

    async def _owner_summaries(self, owner: str) -> dict[str, ConversationSummary]:
        cached = self._summaries.get(owner)
        if cached is None:
            folder = self._folder(owner)
            cached = await asyncio.to_thread(_scan, folder, owner)
            self._summaries[owner] = cached
        return cached

    def _folder(self, owner: str) -> Path:
        # Hashed: an owner is any string from a token, not a file name.
        digest = hashlib.sha256(owner.encode("utf-8", "surrogatepass")).hexdigest()
        return self._root / digest

    def _path(self, owner: str, conversation_id: str) -> Path:
        return self._folder(owner) / f"{conversation_id}.json"


# --- blocking helpers, run in worker threads


def _read(path: Path) -> Conversation | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return conversation_from_document(json.loads(data))
    except (UnicodeDecodeError, json.JSONDecodeError, DocumentError) as error:
        # Unreadable is reported as missing, and said loudly here: the
        # user can start a new conversation; an operator can repair the file.
        logger.warning("conversation file %s cannot be read: %s", path, error)
        return None


def _scan(folder: Path, owner: str) -> dict[str, ConversationSummary]:
    found: dict[str, ConversationSummary] = {}
    if not folder.is_dir():
        return found
    # Temp files end in ".tmp", so the glob skips writes cut short by a crash.
    for path in folder.glob("*.json"):
        conversation = _read(path)
        if conversation is not None and conversation.owner == owner:
            found[conversation.id] = conversation.summary()
    return found
