"""The zygote's side of kernel confinement: plan, start, and account for kernels.

``sandbox.py`` holds what runs in the confined processes; this holds what the
zygote does around them: pick each kernel's uid and limits, create its
control groups, fork the launcher and learn the init's pid from it, and,
once the init is reaped, turn what it reported into the kernel's exit
("killed by signal 9" and "out of memory (limit 2048 MiB)").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.execution.kernel import sandbox, syscalls
from services.execution.kernel.cgroups import CgroupLimiter
from services.execution.kernel.sandbox import KernelPlan, SandboxConfig, SandboxError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import NoReturn

MIB = 1024 * 1024


@dataclass
class ConfinedKernel:
    """A started kernel, known to the zygote by its init's pid."""

    pid: int
    plan: KernelPlan
    status_fd: int

    def finish(self, init_status: int) -> tuple[int, str]:
        """The kernel's wait status and a detail, once the init is reaped."""
        try:
            status, error = sandbox.read_kernel_status(self.status_fd)
        finally:
            os.close(self.status_fd)
        detail = f"could not be confined: {error}" if error else ""
        groups = self.plan.groups
        if groups is not None:
            if groups.oom_killed():
                limit = self.plan.memory_limit_bytes // MIB
                detail = f"out of memory (limit {limit} MiB)"
            groups.remove()
        return (init_status if status is None else status), detail


class Confinement:
    """Confines every kernel the zygote forks."""

    def __init__(self, config: SandboxConfig, limiter: CgroupLimiter | None) -> None:
        self._config = config
        self._limiter = limiter
        self._as_root = os.geteuid() == 0
        self._readonly = config.readonly_paths or sandbox.python_paths()
        self._next_uid = 0
        # Read once: every kernel's /etc/passwd is the host's plus its user.
        self._users = sandbox.UserFiles.read()

    @classmethod
    def open(cls, config: SandboxConfig) -> Confinement:
        """Set the zygote up to adopt kernels; use cgroups where writable."""
        # Each kernel's init is forked by a launcher that exits at once; as a
        # subreaper the zygote adopts the init and learns how it ended.
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
        limiter = CgroupLimiter.open() if os.geteuid() == 0 else None
        return cls(config, limiter)

    def describe(self) -> str:
        """How kernels are confined, for the service's log."""
        config = self._config
        if self._as_root:
            last = config.uid_first + config.uid_count - 1
            who = f"a uid each from {config.uid_first}-{last}"
        else:
            who = "the service's uid in a user namespace each"
        limits = "cgroups memory+pids" if self._limiter else "rlimits only"
        return (
            f"namespaces (pid, mount, ipc), {who}, no capabilities, {limits}, "
            f"{config.max_processes} processes, {config.max_open_files} files, "
            f"{config.scratch_bytes // MIB} MiB scratch"
        )

    def plan(
        self, name: str, memory_limit_bytes: int, uids_in_use: set[int]
    ) -> KernelPlan:
        """Decide one kernel's uid and limits; create its control groups."""
        uid = self._allocate_uid(uids_in_use) if self._as_root else None
        passwd, group = self._users.with_kernel_user(uid) if uid else (b"", b"")
        config = self._config
        groups = None
        if self._limiter is not None:
            groups = self._limiter.create(
                name, memory_limit_bytes, config.max_processes
            )
        return KernelPlan(
            uid=uid,
            memory_limit_bytes=memory_limit_bytes,
            max_processes=config.max_processes,
            max_open_files=config.max_open_files,
            scratch_bytes=config.scratch_bytes,
            readonly_paths=self._readonly,
            groups=groups,
            passwd=passwd,
            group=group,
        )

    def start(
        self,
        plan: KernelPlan,
        kernel_fd: int,
        shed: Callable[[Sequence[int]], None],
        kernel: Callable[[], NoReturn],
    ) -> ConfinedKernel:
        """Fork the launcher and return the confined kernel's init.

        ``shed`` closes the zygote's descriptors in the launcher, but those
        given; ``kernel`` runs in the kernel process once it is confined.
        """
        report_read, report_write = os.pipe()
        status_read, status_write = os.pipe()
        try:
            pid = os.fork()
            if pid == 0:
                os.close(report_read)
                os.close(status_read)
                shed((kernel_fd, report_write, status_write))
                sandbox.launch(plan, report_write, status_write, kernel)
            os.close(report_write)
            report_write = -1
            os.close(status_write)
            status_write = -1
            try:
                init = sandbox.read_launch_report(report_read)
            finally:
                os.waitpid(pid, 0)
        except BaseException:
            os.close(status_read)
            raise
        finally:
            os.close(report_read)
            for fd in (report_write, status_write):
                if fd >= 0:
                    os.close(fd)
        os.set_blocking(status_read, False)
        return ConfinedKernel(init, plan, status_read)

    def probe(self) -> str:
        """Confine a throwaway kernel; why that failed, or "" if it worked."""
        plan = self.plan("probe", 0, set())
        try:
            started = self.start(plan, -1, lambda keep: None, lambda: os._exit(0))
        except OSError as error:
            if plan.groups is not None:
                plan.groups.remove()
            return str(error)
        _, init_status = os.waitpid(started.pid, 0)
        status, detail = started.finish(init_status)
        if detail:
            return detail
        if status != 0:
            return f"a confined process ended with status {status}"
        return ""

    def close(self) -> None:
        """Remove the zygote's control groups."""
        if self._limiter is not None:
            self._limiter.close()

    def _allocate_uid(self, in_use: set[int]) -> int:
        config = self._config
        for _ in range(config.uid_count):
            uid = config.uid_first + self._next_uid
            self._next_uid = (self._next_uid + 1) % config.uid_count
            if uid not in in_use:
                return uid
        raise SandboxError("every kernel uid is in use")


def open_confinement(config: SandboxConfig) -> tuple[Confinement | None, str]:
    """The zygote's confinement and "", or None and why it cannot confine."""
    try:
        confinement = Confinement.open(config)
    except OSError as error:
        return None, str(error)
    failure = confinement.probe()
    if failure:
        confinement.close()
        return None, failure
    return confinement, ""
