"""Notebooks for the notebook service's tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.notebook.models import Cell, Notebook, NotebookId

START = datetime(2025, 1, 1, 9, 30, tzinfo=UTC)


def make_notebook(
    notebook_id: str,
    *,
    owner: str = "ada",
    minute: int = 0,
    revision: int = 1,
    name: str = "",
    cells: tuple[Cell, ...] = (),
) -> Notebook:
    """A notebook created `minute` minutes after START."""
    created = START + timedelta(minutes=minute)
    return Notebook(
        id=NotebookId(notebook_id),
        owner=owner,
        name=name or f"notebook {notebook_id}",
        revision=revision,
        create_time=created,
        update_time=created,
        cells=cells,
    )
