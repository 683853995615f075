"""Exceptions raised by cells, as the user should see them.

A cell is compiled with the file name `<cell ID>` (and its source is put in
`linecache`), so its frames are recognisable and show their lines. What the
user sees is the traceback from the first cell frame on: the kernel's own
frames above it (the worker's loop, `exec`, asyncio's machinery for
top-level `await`) are dropped, while library frames that cell code called
are kept. An exception with no cell frame at all (a SyntaxError, a NameError
for a SQL placeholder) shows only its exception lines. The same trimming
applies to chained exceptions (`raise ... from ...`, exceptions raised while
handling another) and to the members of exception groups.

The formatted text reads like Python's, with `Cell ID, line N` where Python
would print `File "<cell ID>", line N`. Sizes are capped (message, text,
frames, source lines) so that no exception can make the `done` event too big
to send: a cell can raise `ValueError("x" * 10**9)`.
"""

from __future__ import annotations

import linecache
import os
import re
import traceback
from pathlib import Path
from typing import Final

from reflow.notebook.v1 import notebook_pb2

MAX_MESSAGE_CHARS: Final = 16 * 1024
MAX_TRACEBACK_CHARS: Final = 64 * 1024
MAX_SOURCE_LINE_CHARS: Final = 500
# Deep recursion: keep the outermost and innermost frames.
MAX_FRAMES: Final = 200
_CELL_FILENAME: Final = re.compile(r"^<cell (?P<cell_id>.*)>$")
_FILE_LINE: Final = re.compile(
    r'^(?P<indent>\s*)File "<cell (?P<cell_id>.*?)>", line ', re.M
)


def cell_filename(cell_id: str) -> str:
    """The file name a cell's code is compiled under."""
    return f"<cell {cell_id}>"


def register_source(cell_id: str, code: str) -> str:
    """Put a cell's code in linecache, so tracebacks can quote it; its file name."""
    filename = cell_filename(cell_id)
    # mtime None: linecache.checkcache() leaves the entry alone.
    linecache.cache[filename] = (
        len(code),
        None,
        code.splitlines(keepends=True),
        filename,
    )
    return filename


_KERNEL_DIR = str(Path(__file__).resolve().parent) + os.sep


def cell_error(error: BaseException) -> notebook_pb2.CellError:
    """`error` without the kernel's frames, as a CellError."""
    message = _cut(_message(error), MAX_MESSAGE_CHARS)
    try:
        summary = traceback.TracebackException.from_exception(error)
        _trim(summary, seen=set())
        frames = [_frame(frame) for frame in summary.stack]
        text = "".join(summary.format())
    except Exception:  # noqa: BLE001 - the cell's error, even if we cannot format it
        frames = []
        text = f"{type(error).__qualname__}: {message}\n"
    if isinstance(error, SyntaxError) and not frames:
        frames = _syntax_error_frames(error)
    if len(frames) > MAX_FRAMES:
        frames = frames[: MAX_FRAMES // 2] + frames[-MAX_FRAMES // 2 :]
    text = _FILE_LINE.sub(r"\g<indent>Cell \g<cell_id>, line ", text)
    return notebook_pb2.CellError(
        type=type(error).__qualname__,
        message=message,
        frames=frames,
        traceback=_cut_middle(text, MAX_TRACEBACK_CHARS),
    )


def short_error(error_type: str, message: str) -> notebook_pb2.CellError:
    """An error told by its type and message alone (a database's, say)."""
    message = _cut(message, MAX_MESSAGE_CHARS)
    return notebook_pb2.CellError(
        type=error_type, message=message, traceback=f"{error_type}: {message}\n"
    )


def _trim(summary: traceback.TracebackException, seen: set[int]) -> None:
    if id(summary) in seen:
        return
    seen.add(id(summary))
    stack = list(summary.stack)
    first = next(
        (i for i, frame in enumerate(stack) if _CELL_FILENAME.match(frame.filename)),
        len(stack),
    )
    last = len(stack)
    # The interrupt handler raises KeyboardInterrupt from a kernel frame
    # that sits on top of the user's: it is not the user's to see either.
    while last > first and stack[last - 1].filename.startswith(_KERNEL_DIR):
        last -= 1
    summary.stack = traceback.StackSummary.from_list(stack[first:last])
    for linked in (summary.__cause__, summary.__context__):
        if linked is not None:
            _trim(linked, seen)
    for member in getattr(summary, "exceptions", None) or ():
        _trim(member, seen)


def _frame(frame: traceback.FrameSummary) -> notebook_pb2.TracebackFrame:
    match = _CELL_FILENAME.match(frame.filename)
    return notebook_pb2.TracebackFrame(
        cell_id=match.group("cell_id") if match else "",
        filename="" if match else frame.filename,
        line=frame.lineno or 0,
        function=frame.name,
        source_line=_cut((frame.line or "").strip(), MAX_SOURCE_LINE_CHARS),
    )


def _syntax_error_frames(error: SyntaxError) -> list[notebook_pb2.TracebackFrame]:
    match = _CELL_FILENAME.match(error.filename or "")
    if match is None:
        return []
    return [
        notebook_pb2.TracebackFrame(
            cell_id=match.group("cell_id"),
            line=error.lineno or 0,
            function="<module>",
            source_line=_cut((error.text or "").strip(), MAX_SOURCE_LINE_CHARS),
        )
    ]


def _message(error: BaseException) -> str:
    if isinstance(error, SyntaxError) and error.msg:
        # str() would add `(<cell ID>, line N)`; the frame says where.
        return error.msg
    try:
        return str(error)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the error
        return f"<{type(error).__name__} without a printable message>"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _cut_middle(text: str, limit: int) -> str:
    # The start says where it began, the end what was raised: keep both.
    if len(text) <= limit:
        return text
    half = limit // 2
    omitted = len(text) - 2 * half
    return f"{text[:half]}\n… ({omitted} characters omitted) …\n{text[-half:]}"
