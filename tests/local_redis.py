"""A Redis of the tests' own: ``redis-server`` on a free loopback port.

Not the machine's Redis on 6379: other test runs share the machine, and a
server of our own starts empty and goes away with the test session. Nothing
is written to disk.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import time
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterator

READY_TIMEOUT_S: Final = 20.0


def redis_server_binary() -> str:
    """``redis-server`` on the PATH (Debian's ``redis-server`` package)."""
    found = shutil.which("redis-server")
    if found is None:
        raise AssertionError("redis-server is missing: apt-get install redis-server")
    return found


@contextlib.contextmanager
def serve_redis() -> Iterator[str]:
    """Run a redis-server for the block; yield its ``redis://`` URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    password = secrets.token_hex(16)
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            # As the service requires: without it any cell could use it.
            "--requirepass",
            password,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_until_listening(port, process)
        yield f"redis://:{password}@127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_until_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"redis-server exited with {process.returncode}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=1) as connection,
        ):
            connection.sendall(b"PING\r\n")
            # It answers (asking for the password): it is listening.
            if connection.recv(16).startswith((b"+PONG", b"-NOAUTH")):
                return
        time.sleep(0.05)  # not listening yet: nothing to await but time
    raise AssertionError(f"redis-server did not answer within {READY_TIMEOUT_S} s")
