"""The conversation stores: one suite, every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from services.assistant.errors import ConversationNotFound, InvalidPageToken
from services.assistant.models import Conversation, Message, Role, ToolCall
from services.assistant.store.local import LocalConversationStore
from services.assistant.store.memory import MemoryConversationStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from services.assistant.store import ConversationStore

START = datetime(2025, 1, 1, tzinfo=UTC)


def conversation(
    number: int, owner: str = "alice", notebook_id: str = "nb1"
) -> Conversation:
    moment = START + timedelta(minutes=number)
    return Conversation(
        id=f"c{number}",
        notebook_id=notebook_id,
        owner=owner,
        title=f"chat {number}",
        create_time=moment,
        update_time=moment,
        messages=(
            Message(Role.USER, "hi", create_time=moment),
            Message(
                Role.ASSISTANT,
                "",
                (ToolCall("t1", "read_notebook", "{}"),),
                create_time=moment,
            ),
            Message(Role.TOOL, "{}", tool_call_id="t1", create_time=moment),
        ),
    )


@pytest.fixture(params=["memory", "local"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ConversationStore]:
    if request.param == "memory":
        yield MemoryConversationStore()
        return
    local = LocalConversationStore(tmp_path)
    yield local
    await local.close()


async def test_saved_conversation_reads_back_equal(store: ConversationStore) -> None:
    await store.save(conversation(1))

    assert await store.get("alice", "c1") == conversation(1)


async def test_another_users_conversation_is_not_found(
    store: ConversationStore,
) -> None:
    await store.save(conversation(1))

    with pytest.raises(ConversationNotFound):
        await store.get("bob", "c1")


async def test_listing_is_newest_first_for_one_notebook(
    store: ConversationStore,
) -> None:
    for number in (1, 2, 3):
        await store.save(conversation(number))
    await store.save(conversation(4, notebook_id="nb2"))
    await store.save(conversation(5, owner="bob"))

    page, token = await store.list("alice", "nb1", 10, "")

    assert [c.id for c in page] == ["c3", "c2", "c1"]
    assert token == ""


async def test_listing_pages_with_tokens(store: ConversationStore) -> None:
    for number in (1, 2, 3):
        await store.save(conversation(number))

    first, token = await store.list("alice", "nb1", 2, "")
    second, last = await store.list("alice", "nb1", 2, token)

    assert [c.id for c in first + second] == ["c3", "c2", "c1"]
    assert last == ""


async def test_another_users_page_token_is_refused(store: ConversationStore) -> None:
    for number in (1, 2, 3):
        await store.save(conversation(number))
    _, token = await store.list("alice", "nb1", 2, "")

    with pytest.raises(InvalidPageToken):
        await store.list("bob", "nb1", 2, token)


async def test_local_store_lists_what_an_earlier_process_saved(tmp_path: Path) -> None:
    earlier = LocalConversationStore(tmp_path)
    await earlier.save(conversation(1))
    await earlier.close()

    page, _ = await LocalConversationStore(tmp_path).list("alice", "nb1", 10, "")

    assert [c.id for c in page] == ["c1"]


async def test_local_store_leaves_no_temp_files(tmp_path: Path) -> None:
    store = LocalConversationStore(tmp_path)

    await store.save(conversation(1))
    await store.save(conversation(1))

    files = [p.name for p in (tmp_path / "conversations").rglob("*") if p.is_file()]
    assert files == ["c1.json"]
