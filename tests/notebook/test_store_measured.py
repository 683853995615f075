"""Tests for MeasuredStore: every store call timed, refused writes counted."""

from __future__ import annotations

import dataclasses

import pytest
from prometheus_client import REGISTRY

from services.notebook.errors import NotebookNotFound, RevisionConflict
from services.notebook.models import NotebookId
from services.notebook.store.measured import MeasuredStore
from services.notebook.store.memory import MemoryStore
from tests.notebook.samples import make_notebook


def timed(operation: str, outcome: str) -> float:
    labels = {"backend": "memory", "operation": operation, "outcome": outcome}
    count = REGISTRY.get_sample_value("reflow_store_operation_seconds_count", labels)
    return count or 0.0


def conflicts() -> float:
    labels = {"stage": "store"}
    return REGISTRY.get_sample_value("reflow_revision_conflicts_total", labels) or 0.0


async def test_each_call_is_timed_by_operation_and_outcome() -> None:
    store = MeasuredStore(MemoryStore(), "memory")
    before = timed("create", "ok"), timed("get", "error")

    await store.create(make_notebook("nb1"))
    with pytest.raises(NotebookNotFound):
        await store.get(NotebookId("missing"))

    assert (timed("create", "ok"), timed("get", "error")) == (
        before[0] + 1,
        before[1] + 1,
    )


async def test_a_write_the_store_refuses_is_counted_as_a_conflict() -> None:
    store = MeasuredStore(MemoryStore(), "memory")
    notebook = make_notebook("nb1", revision=1)
    await store.create(notebook)
    await store.put(dataclasses.replace(notebook, revision=2), expected_revision=1)
    before = conflicts()

    with pytest.raises(RevisionConflict):
        await store.put(dataclasses.replace(notebook, revision=2), expected_revision=1)

    assert conflicts() == before + 1
