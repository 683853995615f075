"""The kernel's working directory: the notebook's files, and what cells do to them.

This is the kernel's side. The service never looks into a directory the
kernel controls (a cell could plant symbolic links, fifos or hard links
there); it sends the notebook's files over the protocol instead
(`WorkdirRequest`), and the kernel writes them under its working directory:
`/home/notebook/work` in a confined kernel (on the kernel's private tmpfs),
a fresh temporary directory otherwise. That directory is made the current
one, so `open("data.csv")` in a cell finds the uploaded file.

After each cell, `report_changes` compares the directory with what the
kernel last wrote or reported and sends a `FileChanged` event for each
regular file added, changed or deleted since; the service stores those
through the notebook service, which checks each path like an uploaded one.
When nothing changed nothing is sent, and the scan is one `scandir` per
directory, so a cell that touches no file pays a few microseconds. Symbolic
links, fifos, sockets and devices are not the notebook's files: they are
neither followed nor reported. The scan stops at a number of entries and a
depth, so a cell that creates a million files cannot stall the kernel after
every cell; files are opened with `O_NOFOLLOW | O_NONBLOCK` and re-checked
with `fstat`, so a file swapped for a fifo between scan and read cannot
block the kernel.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from typing import TYPE_CHECKING, Final, NamedTuple

from reflow.execution.v1 import kernel_pb2

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

CONFINED_WORKDIR: Final = "/home/notebook/work"
# A directory this deep or this full is not scanned further: such trees are
# scratch space, not files a user means to keep.
MAX_DEPTH: Final = 16
MAX_ENTRIES: Final = 10_000
# Files reported after one cell; the rest are reported after the next one.
MAX_REPORTED: Final = 200

_OPEN_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class _Stamp(NamedTuple):
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int


class Workdir:
    """The working directory and the state of its files last reported."""

    def __init__(
        self, root: str, max_file_bytes: int, *, temporary: bool = False
    ) -> None:
        self.root = root
        self.temporary = temporary
        self._max_file_bytes = max_file_bytes
        self._known: dict[str, _Stamp] = {}

    def write(self, path: str, content: bytes) -> None:
        """Store one of the notebook's files (from the service)."""
        target = self._target(path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        # Replace whatever is there (a link a cell planted included) rather
        # than write through it.
        temp = f"{target}.reflow-{os.getpid()}"
        with open(temp, "wb") as file:
            file.write(content)
        os.replace(temp, target)
        self._known[path] = _stamp(os.lstat(target))

    def remove(self, path: str) -> None:
        """Remove one file (deleted through the API)."""
        target = self._target(path)
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            if not stat.S_ISDIR(os.lstat(target).st_mode):
                os.unlink(target)
        self._known.pop(path, None)

    def changes(self) -> Iterator[kernel_pb2.FileChanged]:
        """What changed since the last call (or write), file by file."""
        current, complete = self._scan()
        reported = 0
        for path, stamp in current.items():
            if self._known.get(path) == stamp:
                continue
            if reported == MAX_REPORTED:
                return
            reported += 1
            change = self._read(path, stamp)
            self._known[path] = stamp
            if change is not None:
                yield change
        if not complete:
            return  # what the scan did not reach is not known to be gone
        for path in [path for path in self._known if path not in current]:
            del self._known[path]
            yield kernel_pb2.FileChanged(path=_wire_path(path), deleted=True)

    def _target(self, path: str) -> str:
        parts = path.split("/")
        if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"not a relative path: {path!r}")
        return os.path.join(self.root, *parts)

    def _scan(self) -> tuple[dict[str, _Stamp], bool]:
        found: dict[str, _Stamp] = {}
        pending = [("", self.root, 0)]
        entries = 0
        while pending:
            prefix, directory, depth = pending.pop()
            try:
                with os.scandir(directory) as scan:
                    for entry in scan:
                        entries += 1
                        if entries > MAX_ENTRIES:
                            return found, False
                        relative = prefix + entry.name
                        if entry.is_dir(follow_symlinks=False):
                            if depth + 1 < MAX_DEPTH:
                                pending.append((relative + "/", entry.path, depth + 1))
                        elif entry.is_file(follow_symlinks=False):
                            found[relative] = _stamp(entry.stat(follow_symlinks=False))
            except OSError:
                continue  # removed while scanned, or made unreadable by the cell
        return found, True

    def _read(self, path: str, stamp: _Stamp) -> kernel_pb2.FileChanged | None:
        change = kernel_pb2.FileChanged(path=_wire_path(path), size_bytes=stamp.size)
        if stamp.size > self._max_file_bytes:
            change.too_large = True
            return change
        try:
            fd = os.open(os.path.join(self.root, path), _OPEN_FLAGS)
        except OSError:
            return None  # gone or swapped for a link since the scan
        with os.fdopen(fd, "rb") as file:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                return None
            content = file.read(self._max_file_bytes + 1)
        if len(content) > self._max_file_bytes:
            change.too_large = True
            change.size_bytes = max(len(content), status.st_size)
            return change
        change.content = content
        change.size_bytes = len(content)
        return change


def _stamp(status: os.stat_result) -> _Stamp:
    return _Stamp(status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


def _wire_path(path: str) -> str:
    # A name that is not UTF-8 cannot travel in a protobuf string; escaped,
    # it carries a backslash, which the notebook service refuses with a
    # message naming it.
    return os.fsencode(path).decode("utf-8", "backslashreplace")


# One per process, like the current directory it owns.
_workdir: Workdir | None = None


def handle(request: kernel_pb2.WorkdirRequest) -> kernel_pb2.KernelEvent:
    """Carry out a WorkdirRequest; the `workdir_done` event answering it."""
    global _workdir
    done = kernel_pb2.WorkdirDone()
    try:
        action = request.WhichOneof("action")
        if action == "open":
            _workdir = _open(request.open)
        elif _workdir is None:
            done.error = "the working directory is not open"
        elif action == "write":
            _workdir.write(request.write.path, request.write.content)
        elif action == "remove":
            _workdir.remove(request.remove.path)
    except (OSError, ValueError) as error:
        done.error = str(error)
    return kernel_pb2.KernelEvent(workdir_done=done)


def report_changes(
    cell_id: str, send: Callable[[kernel_pb2.KernelEvent], None]
) -> None:
    """Send a `file_changed` event per file the cell changed (none if none)."""
    if _workdir is None:
        return
    try:
        for change in _workdir.changes():
            send(kernel_pb2.KernelEvent(cell_id=cell_id, file_changed=change))
    except OSError:
        pass  # an unreadable file (EIO) is reported after a later cell, if ever


def close() -> None:
    """At the kernel's end: an unconfined kernel's directory is on the host's
    /tmp, so it goes (a confined one goes with the kernel's tmpfs)."""
    if _workdir is not None and _workdir.temporary:
        shutil.rmtree(_workdir.root, ignore_errors=True)


def _open(request: kernel_pb2.OpenWorkdir) -> Workdir:
    if request.confined:
        root = CONFINED_WORKDIR
        os.makedirs(root, mode=0o700, exist_ok=True)
    else:
        root = tempfile.mkdtemp(prefix="reflow-work-")
    os.chdir(root)
    return Workdir(root, request.max_file_bytes, temporary=not request.confined)
