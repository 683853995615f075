"""The stack tests' shared stack: every real process, clients outside it.

One dev-mode stack (notebook, execution, assistant, gateway, Envoy) serves
the grpcurl, REST, gRPC-Web and WebSocket tests of a session; tests that need
a differently configured stack start their own with ``stack_process.launch``.
Its assistant talks to a scripted OpenAI-compatible server (``model_server``)
running on a thread of the test process: a test adds the replies it wants
before it chats, and reads the requests the model got.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import pytest

from tests.assistant.model_server import ThreadedModelServer
from tests.stack.stack_process import READY_LINE, launch, stack_env

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.assistant.model_server import ScriptedModelServer
    from tests.stack.stack_process import RunningStack

START_TIMEOUT_S: Final = 90.0
MODEL_API_KEY: Final = "sk-stack-tests-0123456789abcdef"


@pytest.fixture(scope="session")
def model_server() -> Iterator[ScriptedModelServer]:
    """The model the session's stack talks to."""
    with ThreadedModelServer() as server:
        yield server


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, model_server: ScriptedModelServer
) -> Iterator[RunningStack]:
    """The session's running stack, ready to serve."""
    model = {
        "OPENAI_BASE_URL": model_server.url,
        "OPENAI_API_KEY": MODEL_API_KEY,
        "ASSISTANT_MODEL": "scripted-model",
    }
    running = launch(stack_env(tmp_path_factory.mktemp("stack"), model))
    try:
        running.wait_for_line(READY_LINE, START_TIMEOUT_S)
        yield running
    finally:
        running.close()
