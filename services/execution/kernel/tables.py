"""The DataFrames a kernel displayed, kept so that more of their rows can be
fetched than the output carried.

A cell's table output holds its first rows (`outputs.TABLE_ROWS`) and a
`table_id`; the page asks for further rows by that id (GetTableRows). The
kernel keeps the frames of each cell's latest run only (a re-run drops the
previous run's), and at most `MAX_TABLES` in all, oldest dropped first, so
what it holds on to is bounded whatever cells display. Ids start with a
random per-process prefix, so an id from a previous kernel is never mistaken
for one of this kernel's tables.

The main thread keeps frames while cells run; the request-reading thread
reads pages: a lock guards the index.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Final

from services.execution.kernel.outputs import table_page

if TYPE_CHECKING:
    import pandas as pd

    from reflow.notebook.v1 import notebook_pb2

MAX_TABLES: Final = 64
MAX_PAGE_ROWS: Final = 1000


class TableShelf:
    """Displayed DataFrames by table id, bounded."""

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._count = 0
        self._lock = threading.Lock()
        self._frames: OrderedDict[str, pd.DataFrame] = OrderedDict()
        self._by_cell: dict[str, list[str]] = {}

    def begin_cell(self, cell_id: str) -> None:
        """The cell runs again: its previous run's tables go."""
        with self._lock:
            for table_id in self._by_cell.pop(cell_id, []):
                self._frames.pop(table_id, None)

    def keep(self, cell_id: str, frame: pd.DataFrame) -> str:
        """Keep a displayed frame; its id."""
        with self._lock:
            self._count += 1
            table_id = f"{self._prefix}-{self._count}"
            self._frames[table_id] = frame
            self._by_cell.setdefault(cell_id, []).append(table_id)
            while len(self._frames) > MAX_TABLES:
                self._frames.popitem(last=False)
            return table_id

    def page(self, table_id: str, offset: int, limit: int) -> notebook_pb2.Table | None:
        """Rows `offset`.. of the table, at most `limit`; None if not kept."""
        with self._lock:
            frame = self._frames.get(table_id)
        if frame is None:
            return None
        limit = min(max(limit, 1), MAX_PAGE_ROWS)
        table = table_page(frame, max(offset, 0), limit)
        table.table_id = table_id
        return table
