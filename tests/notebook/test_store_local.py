"""What only the local-file store promises: lazy loading, corruption, crashes.

The behaviour every backend shares is tested in test_store.py. These tests
know the file layout (notebooks/<id>.json, owners/<hash>.json) on purpose:
it is what they damage.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from services.notebook.errors import (
    NotebookCorrupt,
    NotebookNotFound,
    RevisionConflict,
)
from services.notebook.models import NotebookId
from services.notebook.store.local import LocalFileStore
from tests.notebook.samples import make_notebook

if TYPE_CHECKING:
    from services.notebook.models import Notebook, NotebookSummary

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def store(tmp_path: Path) -> LocalFileStore:
    return LocalFileStore(tmp_path)


def notebook_file(data_dir: Path, notebook_id: str) -> Path:
    return data_dir / "notebooks" / f"{notebook_id}.json"


async def create_all(store: LocalFileStore, notebooks: list[Notebook]) -> None:
    for notebook in notebooks:
        await store.create(notebook)


async def list_everything(store: LocalFileStore, owner: str) -> list[NotebookSummary]:
    summaries, token = await store.list(owner, 7, "")
    while token:
        page, token = await store.list(owner, 7, token)
        summaries += page
    return summaries


def files_under(directory: Path) -> list[Path]:
    return sorted(path for path in directory.rglob("*") if path.is_file())


def ids_of(summaries: list[NotebookSummary]) -> list[str]:
    return [summary.id for summary in summaries]


async def test_construction_touches_nothing(tmp_path: Path) -> None:
    LocalFileStore(tmp_path / "data")

    assert not (tmp_path / "data").exists()


async def test_a_fresh_store_sees_everything_written_before(tmp_path: Path) -> None:
    writer = LocalFileStore(tmp_path)
    notebooks = [make_notebook(f"nb{i}", minute=i) for i in range(3)]
    await create_all(writer, notebooks)

    reader = LocalFileStore(tmp_path)

    assert ids_of(await list_everything(reader, "ada")) == ["nb2", "nb1", "nb0"]
    assert await reader.get(NotebookId("nb1")) == notebooks[1]


async def test_notebooks_written_after_construction_are_seen(tmp_path: Path) -> None:
    reader = LocalFileStore(tmp_path)
    notebook = make_notebook("nb1")

    await LocalFileStore(tmp_path).create(notebook)

    assert await reader.get(notebook.id) == notebook


async def test_a_loaded_notebook_is_served_from_memory(
    store: LocalFileStore, tmp_path: Path
) -> None:
    notebook = make_notebook("nb1")
    await store.create(notebook)

    notebook_file(tmp_path, "nb1").write_text("overwritten behind the store's back")

    assert await store.get(notebook.id) == notebook


async def test_files_hold_a_versioned_json_document(
    store: LocalFileStore, tmp_path: Path
) -> None:
    await store.create(make_notebook("nb1"))

    document = json.loads(notebook_file(tmp_path, "nb1").read_text("utf-8"))

    assert (document["format"], document["id"]) == (1, "nb1")
    assert document["create_time"] == "2025-01-01T09:30:00+00:00"


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"\xff\xfe\x00",
        b"[]",
        b'{"format": 1}',
        b'{"format": 2, "id": "nb1"}',
    ],
    ids=["empty", "not-json", "not-utf8", "array", "no-fields", "future-format"],
)
async def test_corrupt_file_is_reported_on_get(tmp_path: Path, content: bytes) -> None:
    await LocalFileStore(tmp_path).create(make_notebook("nb1"))
    notebook_file(tmp_path, "nb1").write_bytes(content)

    with pytest.raises(NotebookCorrupt, match="'nb1'"):
        await LocalFileStore(tmp_path).get(NotebookId("nb1"))


async def test_file_holding_another_notebook_is_corrupt(tmp_path: Path) -> None:
    await create_all(LocalFileStore(tmp_path), [make_notebook("nb1")])
    notebook_file(tmp_path, "nb2").write_bytes(
        notebook_file(tmp_path, "nb1").read_bytes()
    )

    with pytest.raises(NotebookCorrupt, match="'nb2'"):
        await LocalFileStore(tmp_path).get(NotebookId("nb2"))


async def test_corrupt_file_does_not_hide_the_owners_other_notebooks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notebooks = [make_notebook(f"nb{i}", minute=i) for i in range(3)]
    await create_all(LocalFileStore(tmp_path), notebooks)
    notebook_file(tmp_path, "nb1").write_text("{truncated")
    store = LocalFileStore(tmp_path)

    with caplog.at_level(logging.WARNING):
        listed = await list_everything(store, "ada")

    assert ids_of(listed) == ["nb2", "nb0"]
    assert await store.get(NotebookId("nb0")) == notebooks[0]
    assert "'nb1'" in caplog.text


async def test_corrupt_notebook_can_be_deleted(tmp_path: Path) -> None:
    await create_all(LocalFileStore(tmp_path), [make_notebook("nb1")])
    notebook_file(tmp_path, "nb1").write_text("{truncated")
    store = LocalFileStore(tmp_path)

    await store.delete(NotebookId("nb1"))

    assert await store.list("ada", 10, "") == ([], "")
    assert not notebook_file(tmp_path, "nb1").exists()


async def test_index_entry_without_a_file_is_skipped_and_removed(
    tmp_path: Path,
) -> None:
    await create_all(
        LocalFileStore(tmp_path), [make_notebook(f"nb{i}", minute=i) for i in range(3)]
    )
    notebook_file(tmp_path, "nb1").unlink()
    store = LocalFileStore(tmp_path)

    listed = await list_everything(store, "ada")

    assert ids_of(listed) == ["nb2", "nb0"]
    assert [
        "nb1" in index.read_text("utf-8") for index in files_under(tmp_path / "owners")
    ] == [False]


async def test_missing_files_do_not_shorten_a_page(tmp_path: Path) -> None:
    await create_all(
        LocalFileStore(tmp_path), [make_notebook(f"nb{i}", minute=i) for i in range(5)]
    )
    notebook_file(tmp_path, "nb3").unlink()

    page, _ = await LocalFileStore(tmp_path).list("ada", 3, "")

    assert ids_of(page) == ["nb4", "nb2", "nb1"]


async def test_unreadable_owner_index_is_rebuilt(tmp_path: Path) -> None:
    await create_all(
        LocalFileStore(tmp_path),
        [make_notebook("ada1", minute=1), make_notebook("bob1", owner="bob")],
    )
    for index in files_under(tmp_path / "owners"):
        index.write_text("{truncated")

    listed = await list_everything(LocalFileStore(tmp_path), "ada")

    assert ids_of(listed) == ["ada1"]


async def test_writes_leave_no_temp_files(
    store: LocalFileStore, tmp_path: Path
) -> None:
    original = make_notebook("nb1")
    await create_all(store, [original, make_notebook("nb2", owner="bob")])
    await store.put(dataclasses.replace(original, revision=2), expected_revision=1)
    await store.delete(NotebookId("nb2"))

    assert [path for path in files_under(tmp_path) if path.suffix == ".tmp"] == []


@pytest.mark.parametrize(
    "notebook_id",
    ["../escape", "..", "a/b", "/etc/passwd", "", "x" * 65, "nb.json", "nb\n"],
)
async def test_ids_that_are_not_plain_file_names_are_not_found(
    store: LocalFileStore, tmp_path: Path, notebook_id: str
) -> None:
    (tmp_path / "escape.json").write_text("{}")

    with pytest.raises(NotebookNotFound):
        await store.get(NotebookId(notebook_id))


async def test_put_and_delete_refuse_path_traversal_ids(
    store: LocalFileStore,
) -> None:
    escaping = make_notebook("../escape")

    with pytest.raises(NotebookNotFound):
        await store.put(escaping, expected_revision=1)
    with pytest.raises(NotebookNotFound):
        await store.delete(escaping.id)


async def test_create_refuses_path_traversal_ids(
    store: LocalFileStore, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="cannot name a file"):
        await store.create(make_notebook("../escape"))

    assert files_under(tmp_path) == []


async def test_cancelled_put_still_completes_and_keeps_the_cache_true(
    store: LocalFileStore, tmp_path: Path
) -> None:
    original = make_notebook("nb1")
    await store.create(original)
    edited = dataclasses.replace(original, revision=2, name="edited")
    put = asyncio.create_task(store.put(edited, expected_revision=1))
    # One turn of the loop, not a wait: the put starts its write and
    # suspends; cancelled before it started, it would simply never run.
    await asyncio.sleep(0)

    put.cancel()
    await store.close()

    assert await store.get(original.id) == edited
    assert await LocalFileStore(tmp_path).get(original.id) == edited


def last_acknowledged(output: bytes) -> dict[str, int]:
    """Each notebook's last revision in the writer's acknowledgements."""
    revisions: dict[str, int] = {}
    # A line cut off by the kill (no newline yet) was never acknowledged.
    for line in output.decode().splitlines(keepends=True):
        if line.endswith("\n"):
            notebook_id, revision = line.split()
            revisions[notebook_id] = int(revision)
    return revisions


async def stored_revisions(
    store: LocalFileStore, notebook_ids: list[str]
) -> dict[str, int]:
    return {
        notebook_id: (await store.get(NotebookId(notebook_id))).revision
        for notebook_id in notebook_ids
    }


async def test_killed_writer_loses_no_acknowledged_revision(tmp_path: Path) -> None:
    writer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.notebook.crash_writer",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
    )
    assert writer.stdout is not None
    try:
        # Its first acknowledgement, however long the interpreter takes to
        # start (it is empty if the writer failed).
        first = await asyncio.wait_for(writer.stdout.readline(), timeout=60)
        # Read while it writes, so a full pipe never pauses the writer.
        rest = asyncio.create_task(writer.stdout.read())
        await asyncio.sleep(1.0)  # deliberate: let it write for a while
    finally:
        # Already gone means it failed; the returncode assertion says how.
        with contextlib.suppress(ProcessLookupError):
            writer.send_signal(signal.SIGKILL)
    acknowledged = last_acknowledged(first + await rest)
    await writer.wait()

    store = LocalFileStore(tmp_path)
    listed = await list_everything(store, "ada")
    # Every notebook file, not just the listed ones: a get raises if any of
    # them is torn. (Temp files of a write cut short end in ".tmp".)
    stored = await stored_revisions(
        store,
        [
            path.stem
            for path in files_under(tmp_path / "notebooks")
            if path.suffix == ".json"
        ],
    )

    assert writer.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 2
    assert set(acknowledged) <= set(ids_of(listed))
    assert {
        notebook_id: revision
        for notebook_id, revision in acknowledged.items()
        if stored[notebook_id] < revision
    } == {}


# -- results written just after put returns (durable=False) -------------------


def revision_on_disk(data_dir: Path, notebook_id: str) -> int:
    return int(json.loads(notebook_file(data_dir, notebook_id).read_text())["revision"])


async def written(data_dir: Path, notebook_id: str, revision: int) -> None:
    """Wait until the file holds ``revision`` (the writer runs right after)."""
    async with asyncio.timeout(30):
        # A file has no event to wait on: look again until it changes.
        while revision_on_disk(data_dir, notebook_id) != revision:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def with_result(tmp_path: Path) -> tuple[LocalFileStore, Notebook]:
    """A store holding notebook nb1 at revision 1 and a result at 2 (not durable)."""
    store = LocalFileStore(tmp_path)
    original = make_notebook("nb1")
    await store.create(original)
    await store.put(
        dataclasses.replace(original, revision=2), expected_revision=1, durable=False
    )
    return store, original


async def test_a_result_is_read_at_once_and_on_disk_right_after(
    tmp_path: Path,
) -> None:
    store, original = await with_result(tmp_path)
    assert (await store.get(NotebookId("nb1"))).revision == 2
    await written(tmp_path, "nb1", 2)
    await store.close()
    assert (await LocalFileStore(tmp_path).get(NotebookId("nb1"))).revision == 2


async def test_close_writes_the_results_not_yet_written(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path)
    original = make_notebook("nb1")
    await store.create(original)
    for revision in range(2, 12):
        await store.put(
            dataclasses.replace(original, revision=revision),
            expected_revision=revision - 1,
            durable=False,
        )
    await store.close()
    assert revision_on_disk(tmp_path, "nb1") == 11


async def test_an_edit_after_results_is_written_with_them_and_checked_against_them(
    tmp_path: Path,
) -> None:
    store, original = await with_result(tmp_path)
    with pytest.raises(RevisionConflict):
        await store.put(dataclasses.replace(original, revision=2), expected_revision=1)
    await store.put(
        dataclasses.replace(original, revision=3, name="edited"), expected_revision=2
    )
    # Durable: on disk when put returned, whatever the writer is doing.
    document = json.loads(notebook_file(tmp_path, "nb1").read_text())
    assert (document["revision"], document["name"]) == (3, "edited")
    await store.close()


async def test_a_deleted_notebook_is_not_written_back_by_a_pending_result(
    tmp_path: Path,
) -> None:
    store, original = await with_result(tmp_path)
    await store.delete(NotebookId("nb1"))
    await store.close()
    assert not notebook_file(tmp_path, "nb1").exists()
    with pytest.raises(NotebookNotFound):
        await LocalFileStore(tmp_path).get(NotebookId("nb1"))
