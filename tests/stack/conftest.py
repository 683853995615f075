"""The stack tests' shared stack: every real process, clients outside it.

One dev-mode stack (notebook, execution, gateway, Envoy; the assistant when
it exists) serves the grpcurl, REST, gRPC-Web and WebSocket tests of a
session; tests that need a differently configured stack start their own
with ``stack_process.launch``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import pytest

from tests.stack.stack_process import READY_LINE, launch, stack_env

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.stack.stack_process import RunningStack

START_TIMEOUT_S: Final = 90.0


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The session's running stack, ready to serve."""
    running = launch(stack_env(tmp_path_factory.mktemp("stack")))
    try:
        running.wait_for_line(READY_LINE, START_TIMEOUT_S)
        yield running
    finally:
        running.close()
