"""Where conversations are kept: the ConversationStore protocol and its backends.

Two backends, chosen by ``ASSISTANT_STORE``: ``local`` (the default; one JSON
file per conversation under ``ASSISTANT_DATA_DIR``, see local.py) and
``memory`` (tests, throwaway runs). Both list a user's conversations about a
notebook newest first, by creation time, with the same page tokens, and both
answer ConversationNotFound for another user's conversation, exactly as for a
missing one.
"""

from __future__ import annotations

import base64
import binascii
import json
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Protocol

from services.assistant.errors import InvalidPageToken
from services.assistant.store.documents import time_from_text, time_to_text

if TYPE_CHECKING:
    import builtins
    from collections.abc import AsyncIterator, Iterable
    from datetime import datetime
    from pathlib import Path

    from services.assistant.models import Conversation, ConversationSummary


class ConversationStore(Protocol):
    """Keeps conversations, each visible to its owner only."""

    async def get(self, owner: str, conversation_id: str) -> Conversation:
        """The conversation; ConversationNotFound if missing or not ``owner``'s."""
        ...

    async def save(self, conversation: Conversation) -> None:
        """Store the conversation, replacing what was stored under its id."""
        ...

    async def list(
        self, owner: str, notebook_id: str, page_size: int, page_token: str
    ) -> tuple[builtins.list[ConversationSummary], str]:
        """One page of ``owner``'s conversations about the notebook, newest
        first, and the next page's token ("" on the last page)."""
        ...


@asynccontextmanager
async def open_store(kind: str, data_dir: Path) -> AsyncIterator[ConversationStore]:
    """The store ``kind`` names ("local" or "memory")."""
    # Imported here: each backend imports this module for the helpers below.
    from services.assistant.store.local import LocalConversationStore
    from services.assistant.store.memory import MemoryConversationStore

    if kind == "memory":
        yield MemoryConversationStore()
        return
    store = LocalConversationStore(data_dir)
    try:
        yield store
    finally:
        await store.close()


def page_of(
    summaries: Iterable[ConversationSummary],
    owner: str,
    notebook_id: str,
    page_size: int,
    page_token: str,
) -> tuple[list[ConversationSummary], str]:
    """The page of ``summaries`` (the owner's) about the notebook after the token."""
    chosen = sorted(
        (s for s in summaries if s.notebook_id == notebook_id),
        key=lambda s: (s.create_time, s.id),
        reverse=True,
    )
    if page_token:
        after = _decode_token(owner, notebook_id, page_token)
        chosen = [s for s in chosen if (s.create_time, s.id) < after]
    page = chosen[:page_size]
    if len(chosen) <= page_size:
        return page, ""
    last = page[-1]
    return page, _encode_token(owner, notebook_id, (last.create_time, last.id))


def _encode_token(owner: str, notebook_id: str, last: tuple[datetime, str]) -> str:
    create_time, conversation_id = last
    payload = {
        "owner": owner,
        "notebook": notebook_id,
        "after": [time_to_text(create_time), conversation_id],
    }
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode("ascii")


def _decode_token(owner: str, notebook_id: str, token: str) -> tuple[datetime, str]:
    try:
        payload = json.loads(
            base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True)
        )
        after = payload["after"]
        if payload["owner"] != owner or payload["notebook"] != notebook_id:
            raise InvalidPageToken()
        create_time, conversation_id = after
        if not isinstance(create_time, str) or not isinstance(conversation_id, str):
            raise InvalidPageToken()
        return time_from_text(create_time), conversation_id
    except (UnicodeError, binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidPageToken() from None
