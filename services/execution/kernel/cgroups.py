"""Per-kernel control groups (cgroup v1 ``memory`` and ``pids``), where writable.

A kernel's memory limit as a cgroup counts what it really holds (resident
pages, its tmpfs scratch, its subprocesses), where ``RLIMIT_AS`` counts only
one process's address space; ``pids.max`` bounds processes and threads of the
whole tree. They need a writable cgroup v1 hierarchy, which root has on a
machine like this one; elsewhere (an ordinary user, most containers) the
zygote falls back to rlimits alone and says so once at start.

Layout: ``<mount>/<controller>/reflow/<zygote pid>/k<request id>``. The
zygote creates a kernel's groups before forking it, the kernel's init moves
itself in before anything else (its children inherit them), and the zygote
removes them once it has reaped the init, after asking ``memory.oom_control``
whether the kernel was killed for memory. Groups of a zygote that died are
removed by the next one to start.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Final

logger = logging.getLogger(__name__)

ROOT: Final = "/sys/fs/cgroup"
CONTROLLERS: Final = ("memory", "pids")
_PARENT: Final = "reflow"


@dataclass(frozen=True)
class KernelGroups:
    """One kernel's groups, one directory per controller."""

    paths: tuple[str, ...]

    def join(self) -> None:
        """Move the calling process (and so its future children) in."""
        for path in self.paths:
            with open(os.path.join(path, "cgroup.procs"), "w", encoding="ascii") as f:
                f.write("0")

    def oom_killed(self) -> bool:
        """Whether the memory controller killed a process of this group."""
        for path in self.paths:
            with contextlib.suppress(OSError):
                with open(
                    os.path.join(path, "memory.oom_control"), encoding="ascii"
                ) as f:
                    for line in f:
                        key, _, value = line.partition(" ")
                        if key == "oom_kill" and value.strip() != "0":
                            return True
        return False

    def remove(self) -> None:
        """Remove the (now empty) groups."""
        for path in self.paths:
            with contextlib.suppress(OSError):
                os.rmdir(path)


class CgroupLimiter:
    """Makes groups for kernels under this zygote's own directory."""

    def __init__(self, bases: dict[str, str]) -> None:
        self._bases = bases

    @classmethod
    def open(cls, root: str = ROOT) -> CgroupLimiter | None:
        """The limiter, or None where cgroup v1 memory and pids are not writable."""
        bases = {}
        for controller in CONTROLLERS:
            mount = os.path.join(root, controller)
            if not os.access(os.path.join(mount, "cgroup.procs"), os.W_OK):
                return None
            parent = os.path.join(mount, _PARENT)
            try:
                os.makedirs(parent, exist_ok=True)
                _remove_stale(parent)
                base = os.path.join(parent, str(os.getpid()))
                os.makedirs(base, exist_ok=True)
            except OSError as error:
                logger.info("cgroup %s is not usable: %s", controller, error)
                return None
            bases[controller] = base
        return cls(bases)

    def create(
        self, name: str, memory_limit_bytes: int, max_processes: int
    ) -> KernelGroups:
        """Groups for one kernel with these limits (0: none)."""
        paths = []
        try:
            for controller, base in self._bases.items():
                path = os.path.join(base, name)
                os.makedirs(path, exist_ok=True)
                paths.append(path)
                if controller == "memory" and memory_limit_bytes:
                    _write(path, "memory.limit_in_bytes", memory_limit_bytes)
                elif controller == "pids" and max_processes:
                    _write(path, "pids.max", max_processes)
        except OSError:
            KernelGroups(tuple(paths)).remove()
            raise
        return KernelGroups(tuple(paths))

    def close(self) -> None:
        """Remove this zygote's directories (their kernels are gone)."""
        for base in self._bases.values():
            _remove_tree(base)


def _write(path: str, name: str, value: int) -> None:
    with open(os.path.join(path, name), "w", encoding="ascii") as file:
        file.write(str(value))


def _remove_stale(parent: str) -> None:
    """Remove the groups of zygotes that are no longer running."""
    with contextlib.suppress(OSError):
        for entry in os.listdir(parent):
            if entry.isdigit() and not os.path.exists(f"/proc/{entry}"):
                _remove_tree(os.path.join(parent, entry))


def _remove_tree(base: str) -> None:
    with contextlib.suppress(OSError):
        for entry in os.listdir(base):
            child = os.path.join(base, entry)
            if os.path.isdir(child):
                with contextlib.suppress(OSError):
                    os.rmdir(child)
        os.rmdir(base)
