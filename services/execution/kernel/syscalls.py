"""The Linux calls the sandbox needs that Python 3.11's ``os`` lacks.

``unshare``, ``setns`` (3.12 has both), ``mount``, ``umount2``,
``pivot_root``, ``prctl`` and ``capset``, through libc with ctypes. Each
raises ``OSError`` with the errno and what was being done, so a failure in a
kernel's set-up reads like "mount /usr: Operation not permitted".
"""

from __future__ import annotations

import ctypes
import os
import platform
from typing import Final

CLONE_NEWNS: Final = 0x00020000
CLONE_NEWIPC: Final = 0x08000000
CLONE_NEWUSER: Final = 0x10000000
CLONE_NEWPID: Final = 0x20000000

MS_RDONLY: Final = 0x1
MS_NOSUID: Final = 0x2
MS_NODEV: Final = 0x4
MS_NOEXEC: Final = 0x8
MS_REMOUNT: Final = 0x20
MS_NOATIME: Final = 0x400
MS_NODIRATIME: Final = 0x800
MS_BIND: Final = 0x1000
MS_REC: Final = 0x4000
MS_PRIVATE: Final = 0x40000
MS_RELATIME: Final = 0x200000
MS_STRICTATIME: Final = 0x1000000
MNT_DETACH: Final = 0x2

PR_SET_DUMPABLE: Final = 4
PR_CAPBSET_DROP: Final = 24
PR_SET_CHILD_SUBREAPER: Final = 36
PR_SET_NO_NEW_PRIVS: Final = 38
PR_CAP_AMBIENT: Final = 47
PR_CAP_AMBIENT_CLEAR_ALL: Final = 4

# Syscalls glibc has no wrapper for, by machine.
_SYSCALLS: Final = {
    "x86_64": {"pivot_root": 155, "capset": 126},
    "aarch64": {"pivot_root": 41, "capset": 91},
}
_CAPABILITY_VERSION_3: Final = 0x20080522
_LAST_CAPABILITY_FALLBACK: Final = 40

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4


def _check(result: int, what: str) -> int:
    if result < 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")
    return result


def _syscall_number(name: str) -> int:
    try:
        return _SYSCALLS[platform.machine()][name]
    except KeyError:
        raise OSError(f"{name} is not known on {platform.machine()}") from None


def unshare(flags: int) -> None:
    """Move this process into new namespaces (``unshare(2)``)."""
    _check(_libc.unshare(flags), "unshare")


def mount(
    source: str | None,
    target: str,
    fstype: str | None = None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    """``mount(2)``."""
    _check(
        _libc.mount(
            source.encode() if source is not None else None,
            target.encode(),
            fstype.encode() if fstype is not None else None,
            flags,
            data.encode() if data is not None else None,
        ),
        f"mount {target}",
    )


def umount(target: str, flags: int = 0) -> None:
    """``umount2(2)``."""
    _check(_libc.umount2(target.encode(), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    """``pivot_root(2)``."""
    number = _syscall_number("pivot_root")
    _check(
        _libc.syscall(number, new_root.encode(), put_old.encode()),
        f"pivot_root {new_root}",
    )


def prctl(option: int, argument: int = 0) -> None:
    """``prctl(2)`` with one argument."""
    _check(_libc.prctl(option, argument, 0, 0, 0), f"prctl {option}")


def drop_capabilities() -> None:
    """Empty every capability set: bounding, ambient, then the rest (capset)."""
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    # Fails only on kernels older than 4.3, which have no ambient set.
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    for capability in range(_last_capability() + 1):
        # EINVAL for a number this kernel does not know: nothing to drop.
        _libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable x 2
    _check(
        _libc.syscall(_syscall_number("capset"), header, data),
        "capset",
    )


def _last_capability() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as file:
            return int(file.read())
    except (OSError, ValueError):
        return _LAST_CAPABILITY_FALLBACK
