"""The NotebookStore contract, run against every backend (STYLE §11.4)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest

from services.notebook.errors import (
    InvalidPageToken,
    NotebookAlreadyExists,
    NotebookNotFound,
    RevisionConflict,
)
from services.notebook.models import (
    Cell,
    CellId,
    CellStatus,
    CellType,
    Notebook,
    NotebookId,
    RunMode,
)
from services.notebook.store import open_store
from tests.notebook.local_dynamodb import fresh_table
from tests.notebook.samples import make_notebook

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable
    from pathlib import Path

    from services.notebook.store import NotebookStore

EVERY_FIELD = Notebook(
    id=NotebookId("nb-every_field"),
    owner="ada@example.com",
    name="Ventes — 2025 📈 月次",
    revision=7,
    create_time=datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
    update_time=datetime(2025, 3, 2, 8, 15, 30, 654321, tzinfo=UTC),
    database_url="postgresql://ada:s3cr%C3%A9t@db.internal:5432/ventes",
    cells=(
        Cell(
            id=CellId("load"),
            type=CellType.PYTHON,
            code='rows = [1, 2, 3]\nprint("héllo", "\\u00e9", "\\n")\t# ✓',
            result_name="",
            status=CellStatus.SUCCESS,
            result={
                "status": "SUCCESS",
                "outputs": [{"stream": "STDOUT", "text": "héllo é \n\n"}],
                "durationMs": "12",
            },
        ),
        Cell(
            id=CellId("query"),
            type=CellType.SQL,
            code="SELECT * FROM ventes WHERE région = 'Île-de-France'",
            result_name="ventes",
            status=CellStatus.ERROR,
            result={
                "status": "ERROR",
                "error": {"ename": "ProgrammingError", "traceback": ["a", "b"]},
                "ratio": 0.5,
                "truncated": False,
                "nothing": None,
            },
        ),
        Cell(
            id=CellId("notes"),
            type=CellType.MARKDOWN,
            code="# 标题\n\n*emphasis* and a zero-width\u200bspace",
            status=CellStatus.STALE,
            disabled=True,
        ),
    ),
    run_mode=RunMode.LAZY,
)

# 1 MiB of code, not all ASCII, in one cell.
HUGE_CELL = Cell(
    id=CellId("huge"), type=CellType.PYTHON, code=("é" + "x" * 1023) * 1024
)


@pytest.fixture(
    params=["memory", "local", pytest.param("dynamodb", marks=pytest.mark.dynamodb)]
)
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[NotebookStore]:
    async with contextlib.AsyncExitStack() as stack:
        dynamodb = None
        if request.param == "dynamodb":
            # A fresh table on the session's moto server (local_dynamodb.py).
            endpoint = request.getfixturevalue("dynamodb_endpoint")
            dynamodb = await stack.enter_async_context(fresh_table(endpoint))
        yield await stack.enter_async_context(
            open_store(request.param, tmp_path, dynamodb)
        )


async def create_all(store: NotebookStore, notebooks: Iterable[Notebook]) -> None:
    for notebook in notebooks:
        await store.create(notebook)


def renamed(notebook: Notebook, name: str) -> Notebook:
    return dataclasses.replace(notebook, name=name, revision=notebook.revision + 1)


async def test_created_notebook_reads_back_with_every_field(
    store: NotebookStore,
) -> None:
    await store.create(EVERY_FIELD)

    assert await store.get(EVERY_FIELD.id) == EVERY_FIELD


async def test_one_mib_cell_reads_back(store: NotebookStore) -> None:
    notebook = make_notebook("big", cells=(HUGE_CELL,))

    await store.create(notebook)

    assert await store.get(notebook.id) == notebook


async def test_times_in_other_zones_read_back_as_the_same_instant(
    store: NotebookStore,
) -> None:
    paris = timezone(timedelta(hours=2))
    notebook = dataclasses.replace(
        make_notebook("zoned"), create_time=datetime(2025, 6, 1, 14, 0, tzinfo=paris)
    )

    await store.create(notebook)

    assert (await store.get(notebook.id)).create_time == datetime(
        2025, 6, 1, 12, 0, tzinfo=UTC
    )


async def test_missing_notebook_is_not_found(store: NotebookStore) -> None:
    with pytest.raises(NotebookNotFound, match="'nope'"):
        await store.get(NotebookId("nope"))


async def test_creating_a_taken_id_fails(store: NotebookStore) -> None:
    await store.create(make_notebook("nb1"))

    with pytest.raises(NotebookAlreadyExists):
        await store.create(make_notebook("nb1", owner="bob"))


async def test_creating_a_taken_id_keeps_the_first_notebook(
    store: NotebookStore,
) -> None:
    first = make_notebook("nb1")
    await store.create(first)

    with pytest.raises(NotebookAlreadyExists):
        await store.create(make_notebook("nb1", owner="bob"))

    assert await store.get(first.id) == first
    assert await store.list("bob", 10, "") == ([], "")


async def test_put_at_the_current_revision_replaces_the_notebook(
    store: NotebookStore,
) -> None:
    original = make_notebook("nb1", revision=1)
    await store.create(original)
    edited = renamed(original, "edited")

    await store.put(edited, expected_revision=1)

    assert await store.get(original.id) == edited


async def test_put_at_a_stale_revision_conflicts_with_the_current_one(
    store: NotebookStore,
) -> None:
    original = make_notebook("nb1", revision=1)
    await store.create(original)
    await store.put(renamed(original, "second"), expected_revision=1)

    with pytest.raises(RevisionConflict) as conflict:
        await store.put(renamed(original, "lost"), expected_revision=1)

    assert conflict.value.current == 2
    assert (await store.get(original.id)).name == "second"


async def test_concurrent_puts_at_one_revision_let_exactly_one_win(
    store: NotebookStore,
) -> None:
    original = make_notebook("nb1", revision=1)
    await store.create(original)

    outcomes = await asyncio.gather(
        store.put(renamed(original, "a"), expected_revision=1),
        store.put(renamed(original, "b"), expected_revision=1),
        return_exceptions=True,
    )

    assert sorted(type(outcome).__name__ for outcome in outcomes) == [
        "NoneType",
        "RevisionConflict",
    ]


async def test_put_of_a_deleted_notebook_is_not_found(store: NotebookStore) -> None:
    original = make_notebook("nb1")
    await store.create(original)
    await store.delete(original.id)

    with pytest.raises(NotebookNotFound):
        await store.put(renamed(original, "late"), expected_revision=1)


async def test_put_may_not_move_a_notebook_to_another_owner(
    store: NotebookStore,
) -> None:
    original = make_notebook("nb1", owner="ada")
    await store.create(original)

    with pytest.raises(ValueError, match="owner"):
        await store.put(
            dataclasses.replace(renamed(original, "x"), owner="bob"),
            expected_revision=1,
        )


async def test_deleted_notebook_is_not_found(store: NotebookStore) -> None:
    await store.create(make_notebook("nb1"))

    await store.delete(NotebookId("nb1"))

    with pytest.raises(NotebookNotFound):
        await store.get(NotebookId("nb1"))


async def test_deleting_a_missing_notebook_is_not_found(store: NotebookStore) -> None:
    with pytest.raises(NotebookNotFound):
        await store.delete(NotebookId("nope"))


async def test_deleted_id_can_be_created_again(store: NotebookStore) -> None:
    await store.create(make_notebook("nb1", owner="ada"))
    await store.delete(NotebookId("nb1"))
    again = make_notebook("nb1", owner="bob", minute=5)

    await store.create(again)

    assert await store.get(again.id) == again
    assert await store.list("ada", 10, "") == ([], "")


async def test_listing_shows_only_the_owners_notebooks(store: NotebookStore) -> None:
    await create_all(
        store,
        [
            make_notebook("ada1", owner="ada"),
            make_notebook("bob1", owner="bob"),
            make_notebook("ada2", owner="ada"),
        ],
    )

    page, token = await store.list("ada", 10, "")

    assert sorted(summary.id for summary in page) == ["ada1", "ada2"]
    assert token == ""


async def test_listing_is_newest_first(store: NotebookStore) -> None:
    await create_all(
        store,
        [
            make_notebook("middle", minute=5),
            make_notebook("newest", minute=9),
            make_notebook("oldest", minute=1),
        ],
    )

    page, _ = await store.list("ada", 10, "")

    assert [summary.id for summary in page] == ["newest", "middle", "oldest"]


async def test_listing_shows_summaries_of_the_latest_revision(
    store: NotebookStore,
) -> None:
    original = dataclasses.replace(EVERY_FIELD, revision=1)
    await store.create(original)
    await store.put(renamed(original, "renamed"), expected_revision=1)

    page, _ = await store.list(EVERY_FIELD.owner, 10, "")

    assert page == [renamed(original, "renamed").summary()]


async def test_listing_leaves_out_deleted_notebooks(store: NotebookStore) -> None:
    await create_all(store, [make_notebook("keep"), make_notebook("gone")])

    await store.delete(NotebookId("gone"))

    assert [summary.id for summary in (await store.list("ada", 10, ""))[0]] == ["keep"]


async def test_listing_of_an_owner_without_notebooks_is_empty(
    store: NotebookStore,
) -> None:
    assert await store.list("nobody", 10, "") == ([], "")


async def test_pages_cover_every_notebook_once_newest_first(
    store: NotebookStore,
) -> None:
    # Two notebooks per minute, so pages must also break ties by id.
    await create_all(
        store, [make_notebook(f"nb{i:02d}", minute=i // 2) for i in range(23)]
    )

    first, first_token = await store.list("ada", 10, "")
    second, second_token = await store.list("ada", 10, first_token)
    third, third_token = await store.list("ada", 10, second_token)

    assert [len(first), len(second), len(third)] == [10, 10, 3]
    assert third_token == ""
    assert [summary.id for summary in first + second + third] == [
        f"nb{i:02d}" for i in reversed(range(23))
    ]


async def test_a_full_last_page_ends_the_listing(store: NotebookStore) -> None:
    await create_all(store, [make_notebook(f"nb{i}", minute=i) for i in range(4)])

    first, first_token = await store.list("ada", 2, "")
    second, second_token = await store.list("ada", 2, first_token)

    assert [len(first), len(second)] == [2, 2]
    assert second_token == ""


async def test_notebooks_created_while_paging_do_not_shift_pages(
    store: NotebookStore,
) -> None:
    await create_all(store, [make_notebook(f"nb{i}", minute=i) for i in range(4)])
    first, token = await store.list("ada", 2, "")

    await store.create(make_notebook("newer", minute=60))
    second, _ = await store.list("ada", 2, token)

    assert [summary.id for summary in first + second] == ["nb3", "nb2", "nb1", "nb0"]


@pytest.mark.parametrize("token", ["garbage", "!!!!", "Zm9vYmFy", "e30=", "W10="])
async def test_garbage_page_token_is_invalid(store: NotebookStore, token: str) -> None:
    with pytest.raises(InvalidPageToken):
        await store.list("ada", 10, token)


async def test_page_token_of_another_owner_is_invalid(store: NotebookStore) -> None:
    await create_all(
        store, [make_notebook(f"bob{i}", owner="bob", minute=i) for i in range(2)]
    )
    _, bobs_token = await store.list("bob", 1, "")

    with pytest.raises(InvalidPageToken):
        await store.list("ada", 1, bobs_token)
