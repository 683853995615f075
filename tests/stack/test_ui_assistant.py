"""The assistant panel in Chromium, against the stack's scripted model.

The model (tests/assistant/model_server.py) is told what to answer before
the page asks: a tool call that adds a cell, one that runs every stale cell,
then text. The page must stream the text, show each call as a step, and show
the cell and its output appear in the notebook as the tools act.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from playwright.sync_api import expect

from tests.assistant.model_server import text, tool_call
from tests.stack.browser import Api, Session, cell_codes, screenshot
from tests.stack.test_chat import unconfigured  # noqa: F401  (fixture)

if TYPE_CHECKING:
    from collections.abc import Callable

    from playwright.sync_api import Browser

    from tests.assistant.model_server import ScriptedModelServer
    from tests.stack.stack_process import RunningStack

    SignedIn = Callable[..., Session]


def test_the_assistant_streams_its_answer_and_its_edits_show_live(
    signed_in: SignedIn, api: Api, model_server: ScriptedModelServer
) -> None:
    notebook_id = api.notebook("base = 40")
    model_server.add(
        tool_call("create_cell", code="print(base + 2)"),
        tool_call("run_cells", call_id="call_2"),
        text("I added ", "a cell and ", "ran it."),
    )
    page = signed_in(api.user).open(notebook_id)

    page.click("[data-panel=assistant]")
    page.fill(".chat-input", "Print base plus two")
    page.click(".chat-form button[type=submit]")

    answer = page.locator(".msg-assistant")
    expect(answer.locator(".msg-text")).to_have_text("I added a cell and ran it.")
    expect(answer.locator(".step.step-ok .step-name")).to_have_text(
        ["create_cell", "run_cells"]
    )
    expect(page.locator("pre.stdout")).to_have_text("42\n")
    assert cell_codes(page) == ["base = 40", "print(base + 2)"]
    assert model_server.requests[-1]["messages"][1]["content"] == (
        "Print base plus two"
    )
    screenshot(page, "assistant")


def test_with_no_model_configured_the_panel_names_the_missing_setting(
    chromium: Browser,
    unconfigured: RunningStack,  # noqa: F811  (the imported fixture)
) -> None:
    api = Api(unconfigured, "ada", unconfigured.token("ada"))
    notebook_id = api.notebook("x = 1")
    context = chromium.new_context(viewport={"width": 1200, "height": 900})
    page = Session(unconfigured, context, api.token).open(notebook_id)

    page.click("[data-panel=assistant]")
    page.fill(".chat-input", "hello")
    page.keyboard.press("Enter")

    expect(page.locator(".msg-assistant .chat-error")).to_contain_text("OPENAI_API_KEY")
    context.close()
