"""The sandbox's pure parts: which paths are bound, the user entry, the
reports its processes send, and per-kernel control groups (where this
machine lets us write them). The confinement itself is tested by the
attacks of tests/stack/test_isolation.py and by every test that runs a cell."""

from __future__ import annotations

import os
import struct
import sys
from typing import TYPE_CHECKING

import pytest

from services.execution.kernel import sandbox
from services.execution.kernel.cgroups import CgroupLimiter
from services.execution.kernel.confinement import Confinement
from services.execution.kernel.sandbox import SandboxConfig, SandboxError

if TYPE_CHECKING:
    from pathlib import Path
    from typing import NoReturn


def test_only_the_outermost_of_nested_paths_is_bound() -> None:
    paths = ["/usr", "/usr/lib/python3", "/opt/venv", "/opt/venv2", "/opt/venv/lib"]

    assert sandbox._outermost(paths) == ("/opt/venv", "/opt/venv2", "/usr")


def test_the_python_installation_and_the_code_are_bound() -> None:
    paths = sandbox.python_paths()

    assert any(os.path.realpath(sys.base_prefix).startswith(p) for p in paths)
    services = os.path.dirname(os.path.realpath(sandbox.__file__))
    assert any(services.startswith(p) for p in paths)
    # Never the project's root, where `make run` keeps its data directory.
    assert not any(os.path.isdir(os.path.join(p, "services")) for p in paths)


def test_the_kernel_user_is_added_to_passwd_and_group() -> None:
    passwd, group = sandbox.UserFiles.read().with_kernel_user(201234)

    assert passwd.endswith(b"notebook:x:201234:201234::/home/notebook:/bin/sh\n")
    assert group.endswith(b"notebook:x:201234:\n")
    assert passwd.startswith(b"root:")


def test_mountinfo_escapes_are_read_back() -> None:
    assert sandbox._unescape("/a\\040b/c\\011d\\134e") == "/a b/c\td\\e"


def test_the_launch_report_gives_the_init_pid_or_the_error() -> None:
    read, write = os.pipe()
    os.write(write, b"P" + struct.pack("!i", 4321))
    os.close(write)
    assert sandbox.read_launch_report(read) == 4321
    os.close(read)

    read, write = os.pipe()
    os.write(write, b"Eunshare: Operation not permitted")
    os.close(write)
    with pytest.raises(SandboxError, match="unshare: Operation not permitted"):
        sandbox.read_launch_report(read)
    os.close(read)


def test_the_init_reports_the_kernels_status_or_its_setup_error() -> None:
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.write(write, b"S" + struct.pack("!i", 9))
    os.close(write)
    assert sandbox.read_kernel_status(read) == (9, "")
    os.close(read)

    read, write = os.pipe()
    os.set_blocking(read, False)
    os.write(write, b"Emount /usr: Permission denied")
    os.close(write)
    assert sandbox.read_kernel_status(read) == (None, "mount /usr: Permission denied")
    os.close(read)


@pytest.mark.skipif(
    os.geteuid() != 0, reason="cgroups are writable by root on this machine"
)
def test_kernel_groups_get_their_limits_and_are_removed() -> None:
    limiter = CgroupLimiter.open()
    assert limiter is not None
    try:
        groups = limiter.create("k-test", 256 * 1024 * 1024, 32)
        memory, pids = groups.paths
        with open(os.path.join(memory, "memory.limit_in_bytes")) as file:
            assert int(file.read()) == 256 * 1024 * 1024
        with open(os.path.join(pids, "pids.max")) as file:
            assert file.read().strip() == "32"
        assert not groups.oom_killed()
        groups.remove()
        assert not any(os.path.exists(path) for path in groups.paths)
    finally:
        limiter.close()


def test_code_under_tmp_stays_visible_to_the_kernel(tmp_path: Path) -> None:
    # A checkout under /tmp (as CI may clone one) is bound on top of the
    # kernel's own /tmp, not hidden under it.
    code = tmp_path / "checkout"
    code.mkdir()
    (code / "module.py").write_text("VALUE = 1\n")
    for path in (tmp_path, code):
        path.chmod(0o755)
    (code / "module.py").chmod(0o644)
    module = str(code / "module.py")
    config = SandboxConfig(readonly_paths=(*sandbox.python_paths(), str(code)))
    confinement = Confinement.open(config)
    try:
        plan = confinement.plan("tmp-test", 0, set())

        def kernel() -> NoReturn:
            try:
                with open(module) as file:
                    os._exit(0 if file.read() == "VALUE = 1\n" else 3)
            except OSError:
                os._exit(4)

        started = confinement.start(plan, -1, lambda keep: None, kernel)
        _, status = os.waitpid(started.pid, 0)
        assert started.finish(status) == (0, "")
    finally:
        confinement.close()
