"""MemoryConversationStore: conversations in a dict, for tests and throwaway runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.assistant.errors import ConversationNotFound
from services.assistant.store import page_of

if TYPE_CHECKING:
    import builtins

    from services.assistant.models import Conversation, ConversationSummary


class MemoryConversationStore:
    """Keeps conversations in a dict; everything is lost when the process ends."""

    def __init__(self) -> None:
        self._conversations: dict[str, Conversation] = {}

    async def get(self, owner: str, conversation_id: str) -> Conversation:
        found = self._conversations.get(conversation_id)
        if found is None or found.owner != owner:
            raise ConversationNotFound(conversation_id)
        return found

    async def save(self, conversation: Conversation) -> None:
        self._conversations[conversation.id] = conversation

    async def list(
        self, owner: str, notebook_id: str, page_size: int, page_token: str
    ) -> tuple[builtins.list[ConversationSummary], str]:
        mine = (c.summary() for c in self._conversations.values() if c.owner == owner)
        return page_of(mine, owner, notebook_id, page_size, page_token)
