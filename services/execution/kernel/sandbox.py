"""Kernel confinement: how a forked kernel is made a security boundary.

A kernel runs one user's untrusted code, so the operating system, not
Python, keeps it in. Each kernel is started by the zygote in three steps,
all forks of the warm zygote (copy-on-write, so still milliseconds):

1. **The launcher** (a throwaway child of the zygote) creates a new PID
   namespace — and, when the service is not root, a user namespace that maps
   only the service's own uid — then forks the init, reports the init's pid
   on a pipe and exits. The zygote is a child subreaper, so it adopts the
   init and reaps it like any kernel.
2. **The init** (PID 1 of the new namespace) leads its own session, moves
   into the kernel's control groups (``cgroups.py``), creates mount and IPC
   namespaces and builds the kernel's file system (below); then it forks the
   kernel, drops to the kernel's uid, and stays as PID 1: it forwards
   SIGINT/SIGTERM/SIGHUP to the kernel's process group, reaps orphans (a
   kernel is never PID 1, so it may signal itself like any process), and
   when the kernel exits writes the kernel's wait status on a pipe to the
   zygote and exits. Its exit tears down the namespace: every process in
   it, however it was started (``setsid``, double fork), is killed by the
   Linux kernel.
3. **The kernel** leads its own session, switches to its own unprivileged
   uid (from ``EXECUTION_KERNEL_UIDS``, when the service is root) or keeps
   the service's uid inside the user namespace, drops every capability,
   sets ``PR_SET_NO_NEW_PRIVS`` and its rlimits, and runs the worker.

The file system a kernel sees: read-only binds of system paths (``/usr``,
``/etc``, ``/lib*``, ``/bin``, ``/sbin``), of the Python installation and
of the ``services``/``reflow`` packages (so lazy imports work), a private
``/proc`` of its own PID namespace, a minimal ``/dev``, and one tmpfs of
``EXECUTION_SCRATCH_LIMIT_MB`` holding its home (the working directory),
``/tmp`` and ``/dev/shm``. Nothing else of the host: no data directory, no
``/home``, ``/root`` (but the Python in it), ``/run`` or ``/sys``. Kernels
share the host's network (SQL cells reach databases on loopback); what
keeps them from the services there is that no credential is reachable.

The environment is the zygote's, which the service builds from an
allow-list (``environment.py``), plus ``HOME``, ``TMPDIR`` and ``USER``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import signal
import struct
import sys
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Final, NoReturn

from services.execution.kernel import syscalls
from services.execution.kernel.syscalls import (
    CLONE_NEWIPC,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    MNT_DETACH,
    MS_BIND,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    MS_STRICTATIME,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from services.execution.kernel.cgroups import KernelGroups

logger = logging.getLogger(__name__)

HOME: Final = "/home/notebook"
USER: Final = "notebook"
SYSTEM_PATHS: Final = (
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
)
DEVICES: Final = ("null", "zero", "full", "random", "urandom")
_DEV_LINKS: Final = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
}
# The staging tmpfs the new root is assembled in; the kernel never sees it.
_STAGING: Final = "/tmp"
_OLD: Final = "/old"
_NEW: Final = "/new"
_SCRATCH: Final = "/scratch"
_FORWARDED: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_FLAG_NAMES: Final = {
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
    "strictatime": MS_STRICTATIME,
}


@dataclass(frozen=True)
class SandboxConfig:
    """What the zygote needs to confine kernels; JSON on its command line."""

    # First uid of the range kernels get one each from (when root), and its size.
    uid_first: int = 200000
    uid_count: int = 65536
    max_processes: int = 256
    max_open_files: int = 1024
    scratch_bytes: int = 1024 * 1024 * 1024
    # Read-only paths besides SYSTEM_PATHS; empty: the Python installation
    # and the code packages of the process that reads this.
    readonly_paths: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> str:
        """The command-line form."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SandboxConfig:
        """Read the command-line form."""
        values = json.loads(text)
        values["readonly_paths"] = tuple(values.get("readonly_paths", ()))
        return cls(**values)


@dataclass(frozen=True)
class KernelPlan:
    """One kernel's confinement, decided by the zygote before it forks."""

    uid: int | None  # None: keep the service's uid, in a user namespace
    memory_limit_bytes: int
    max_processes: int
    max_open_files: int
    scratch_bytes: int
    readonly_paths: tuple[str, ...]
    groups: KernelGroups | None
    passwd: bytes  # the host's /etc/passwd plus the kernel's user, or b""
    group: bytes


class SandboxError(OSError):
    """Confinement failed; the message says which step."""


def python_paths() -> tuple[str, ...]:
    """The Python installation and the code packages, for read-only binds."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for name in ("services", "reflow"):
        module = sys.modules.get(name)
        for path in getattr(module, "__path__", ()):
            paths.add(path)
    return _outermost(os.path.realpath(path) for path in paths if path)


def _outermost(paths: Iterable[str]) -> tuple[str, ...]:
    kept: list[str] = []
    for path in sorted(set(paths)):
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return tuple(kept)


@dataclass(frozen=True)
class UserFiles:
    """The host's passwd and group files, read once by the zygote."""

    passwd: bytes
    group: bytes

    @classmethod
    def read(cls) -> UserFiles:
        with open("/etc/passwd", "rb") as passwd, open("/etc/group", "rb") as group:
            return cls(passwd.read(), group.read())

    def with_kernel_user(self, uid: int) -> tuple[bytes, bytes]:
        """Both files plus an entry for ``uid``.

        Libraries ask who they run as (``getpass``, libpq's default user
        name); a uid with no entry makes them fail.
        """
        entry = f"\n{USER}:x:{uid}:{uid}::{HOME}:/bin/sh\n".encode()
        passwd = self.passwd.rstrip(b"\n") + entry
        group = self.group.rstrip(b"\n") + f"\n{USER}:x:{uid}:\n".encode()
        return passwd, group


# -- step 1: the launcher, in a throwaway child of the zygote --------------


def launch(
    plan: KernelPlan, report_fd: int, status_fd: int, kernel: Callable[[], NoReturn]
) -> NoReturn:
    """Create the PID namespace and fork its init; report the init's pid."""
    try:
        flags = CLONE_NEWPID
        if plan.uid is None:
            uid, gid = os.getuid(), os.getgid()
            syscalls.unshare(flags | CLONE_NEWUSER)
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
        else:
            syscalls.unshare(flags)
        pid = os.fork()
    except OSError as error:
        _report(report_fd, b"E" + str(error).encode())
        os._exit(1)
    if pid == 0:
        os.close(report_fd)
        _run_init(plan, status_fd, kernel)
    _report(report_fd, b"P" + struct.pack("!i", pid))
    os._exit(0)


def read_launch_report(report_fd: int) -> int:
    """In the zygote: the init's pid from ``launch``, or SandboxError."""
    data = b""
    while chunk := os.read(report_fd, 4096):
        data += chunk
    if data[:1] == b"P" and len(data) == 5:
        pid: int = struct.unpack("!i", data[1:])[0]
        return pid
    if data[:1] == b"E":
        raise SandboxError(data[1:].decode(errors="replace"))
    raise SandboxError("the kernel launcher exited without a report")


def read_kernel_status(status_fd: int) -> tuple[int | None, str]:
    """In the zygote, once the init is reaped: the kernel's wait status (or
    None if the init did not say) and the set-up error the init reported."""
    data = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(status_fd, 4096):
            data += chunk
    if data[:1] == b"S" and len(data) == 5:
        status: int = struct.unpack("!i", data[1:])[0]
        return status, ""
    if data[:1] == b"E":
        return None, data[1:].decode(errors="replace")
    return None, ""


# -- step 2: the init, PID 1 of the kernel's namespace ---------------------


def _run_init(
    plan: KernelPlan, status_fd: int, kernel: Callable[[], NoReturn]
) -> NoReturn:
    try:
        os.setsid()
        if plan.groups is not None:
            plan.groups.join()
        syscalls.unshare(CLONE_NEWNS | CLONE_NEWIPC)
        _build_root(plan)
        child = os.fork()
    except OSError as error:
        _report(status_fd, b"E" + str(error).encode())
        os._exit(1)
    if child == 0:
        os.close(status_fd)
        _become_kernel(plan)
        kernel()
    try:
        _close_except(status_fd)
        _drop_privileges(plan)
        syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)
    except OSError as error:
        os.kill(child, signal.SIGKILL)
        _report(status_fd, b"E" + str(error).encode())
        os._exit(1)
    _serve_as_init(child, status_fd)


def _serve_as_init(child: int, status_fd: int) -> NoReturn:
    def forward(number: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child, number)

    for number in _FORWARDED:
        signal.signal(number, forward)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        if pid == child:
            _report(status_fd, b"S" + struct.pack("!i", status))
            os._exit(0)


def _build_root(plan: KernelPlan) -> None:
    """Assemble the kernel's file system and make it the root."""
    syscalls.mount(None, "/", None, MS_REC | MS_PRIVATE)
    syscalls.mount(
        "tmpfs", _STAGING, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0755"
    )
    os.mkdir(_STAGING + _OLD)
    syscalls.pivot_root(_STAGING, _STAGING + _OLD)
    os.chdir("/")
    _make_scratch(plan)
    os.mkdir(_NEW)
    syscalls.mount("tmpfs", _NEW, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    # The scratch first: a read-only path under /tmp (a checkout there) is
    # then bound on top of the kernel's /tmp instead of hidden under it.
    _bind_dir(_SCRATCH + "/tmp", "/tmp")
    _bind_dir(_SCRATCH + "/home", HOME)
    readonly = _outermost((*SYSTEM_PATHS, *plan.readonly_paths))
    for path in readonly:
        _bind_from_host(path)
    _make_dev()
    _mount_dir("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if plan.passwd:
        _bind_file_contents("/etc/passwd", plan.passwd)
        _bind_file_contents("/etc/group", plan.group)
    _make_readonly(
        tuple(_NEW + path for path in (*readonly, "/etc/passwd", "/etc/group"))
    )
    syscalls.mount(
        None, _NEW, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
    )
    # Stack the new root on the staging one, then detach the staging one
    # (and the host under it): pivot_root(".", ".") as its man page shows.
    os.chdir(_NEW)
    syscalls.pivot_root(".", ".")
    syscalls.umount(".", MNT_DETACH)
    os.chdir("/")


def _make_scratch(plan: KernelPlan) -> None:
    os.mkdir(_SCRATCH)
    syscalls.mount(
        "tmpfs",
        _SCRATCH,
        "tmpfs",
        MS_NOSUID | MS_NODEV,
        f"size={max(plan.scratch_bytes, 1024 * 1024)},mode=0755",
    )
    for name, mode in (("home", 0o700), ("tmp", 0o1777), ("shm", 0o1777)):
        path = f"{_SCRATCH}/{name}"
        os.mkdir(path)
        os.chmod(path, mode)
        if plan.uid is not None:
            os.chown(path, plan.uid, plan.uid)


def _bind_from_host(path: str) -> None:
    source = _OLD + path
    target = _NEW + path
    if os.path.islink(source):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.symlink(os.readlink(source), target)
    elif os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
        syscalls.mount(source, target, None, MS_BIND | MS_REC)


def _make_dev() -> None:
    dev = _NEW + "/dev"
    os.mkdir(dev)
    syscalls.mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755")
    for name in DEVICES:
        target = f"{dev}/{name}"
        with open(target, "w"):
            pass
        syscalls.mount(f"{_OLD}/dev/{name}", target, None, MS_BIND)
    for name, link in _DEV_LINKS.items():
        os.symlink(link, f"{dev}/{name}")
    os.mkdir(f"{dev}/shm")
    syscalls.mount(_SCRATCH + "/shm", f"{dev}/shm", None, MS_BIND)


def _mount_dir(source: str, path: str, fstype: str, flags: int) -> None:
    os.makedirs(_NEW + path, exist_ok=True)
    syscalls.mount(source, _NEW + path, fstype, flags)


def _bind_dir(source: str, path: str) -> None:
    os.makedirs(_NEW + path, exist_ok=True)
    syscalls.mount(source, _NEW + path, None, MS_BIND)


def _bind_file_contents(path: str, contents: bytes) -> None:
    staged = "/" + path.replace("/", "_")
    with open(staged, "wb") as file:
        file.write(contents)
    syscalls.mount(staged, _NEW + path, None, MS_BIND)


def _make_readonly(targets: tuple[str, ...]) -> None:
    """Remount every mount at or under ``targets`` read-only, nosuid, nodev.

    A recursive bind copies submounts (``/etc/resolv.conf`` in a container)
    with their own flags; each needs its own remount. Flags the mount already
    has are kept: in a user namespace, dropping a locked one is refused.
    """
    with open(f"{_OLD}/proc/self/mountinfo", encoding="utf-8") as file:
        lines = file.read().splitlines()
    for line in lines:
        fields = line.split()
        point = _unescape(fields[4])
        if not any(point == t or point.startswith(t + "/") for t in targets):
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
        for option in fields[5].split(","):
            flags |= _FLAG_NAMES.get(option, 0)
        syscalls.mount(None, point, None, flags)


def _unescape(path: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes.
    for escaped, plain in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n")):
        path = path.replace(escaped, plain)
    return path.replace("\\134", "\\")


# -- step 3: the kernel ------------------------------------------------------


def _become_kernel(plan: KernelPlan) -> None:
    os.setsid()
    os.chdir(HOME)
    _drop_privileges(plan)
    limits = {
        resource.RLIMIT_NPROC: plan.max_processes,
        resource.RLIMIT_NOFILE: plan.max_open_files,
        resource.RLIMIT_CORE: 0,
    }
    if plan.memory_limit_bytes:
        # Address space, on top of what the warm kernel has mapped already:
        # a single huge allocation fails the cell with MemoryError instead
        # of waking the cgroup's OOM killer, which would kill the kernel.
        limits[resource.RLIMIT_AS] = _mapped_bytes() + plan.memory_limit_bytes
    for limit, value in limits.items():
        if value:
            resource.setrlimit(limit, (value, value))
    os.environ.update(HOME=HOME, TMPDIR="/tmp", USER=USER, LOGNAME=USER)


def _drop_privileges(plan: KernelPlan) -> None:
    if plan.uid is not None:
        os.setgroups([])
        os.setresgid(plan.uid, plan.uid, plan.uid)
        os.setresuid(plan.uid, plan.uid, plan.uid)
    syscalls.drop_capabilities()


def _mapped_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as file:
        for line in file:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


# -- small pieces -------------------------------------------------------------


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as file:
        file.write(text)


def _report(fd: int, data: bytes) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, data)


def _close_except(keep: int) -> None:
    os.closerange(3, keep)
    os.closerange(keep + 1, 65536)
