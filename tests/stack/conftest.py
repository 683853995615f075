"""The stack tests' shared stack: every real process, clients outside it.

One dev-mode stack (notebook, execution, assistant, gateway, Envoy) serves
the grpcurl, REST, gRPC-Web and WebSocket tests of a session; tests that need
a differently configured stack start their own with ``stack_process.launch``.
Its assistant talks to a scripted OpenAI-compatible server (``model_server``)
running on a thread of the test process: a test adds the replies it wants
before it chats, and reads the requests the model got.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Final

import pytest

from tests.assistant.model_server import ThreadedModelServer
from tests.stack.browser import CHROMIUM, FLAGS, INSTALL_HINT, Api, Session
from tests.stack.stack_process import READY_LINE, launch, stack_env

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from playwright.sync_api import Browser

    from tests.assistant.model_server import ScriptedModelServer
    from tests.stack.stack_process import RunningStack

START_TIMEOUT_S: Final = 90.0
_USERS: Final = itertools.count(1)
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


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (skips without it).

    Per module, not per session: Playwright's sync API holds an event loop
    while it runs, and the async tests of other modules need theirs.
    """
    if CHROMIUM is None:
        pytest.skip(INSTALL_HINT)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=list(FLAGS)
        )
        yield browser
        browser.close()


@pytest.fixture
def signed_in(
    stack: RunningStack, chromium: Browser
) -> Iterator[Callable[..., Session]]:
    """Open browser contexts signed in as a user: ``signed_in("grace")``."""
    contexts = []

    def open_as(user: str, width: int = 1200, height: int = 900) -> Session:
        context = chromium.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        return Session(stack, context, stack.token(user))

    yield open_as
    for context in contexts:
        context.close()


@pytest.fixture
def api(stack: RunningStack) -> Iterator[Api]:
    """The REST API as a user of the test's own, to set notebooks up.

    A user per test, and their kernels stopped after it: the stack allows a
    user ten kernels, and the browser tests together start more.
    """
    user = f"web{next(_USERS)}"
    client = Api(stack, user, stack.token(user))
    yield client
    client.shut_down_kernels()
