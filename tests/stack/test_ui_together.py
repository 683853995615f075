"""Two browsers on one notebook: presence (who else has it open, kept
current as browsers join and leave: WatchNotebook with presence, through
Envoy), and per-cell conflicts between their saves.

A notebook is its owner's alone (DESIGN §5: anyone else gets NOT_FOUND), so
the company a page can show is its owner's other tabs; another user who
tries to open it is refused and never shows up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from playwright.sync_api import expect

from tests.stack.browser import cell, cell_codes, screenshot

if TYPE_CHECKING:
    from collections.abc import Callable

    from playwright.sync_api import Page

    from tests.stack.browser import Api, Session

    SignedIn = Callable[..., Session]


def two_editors(
    signed_in: SignedIn, api: Api, edits: tuple[int, int]
) -> tuple[str, Page, Page]:
    """A notebook of "v = 1", "w = 1" open in two browsers, each with an
    unsaved edit: the first of cell ``edits[0]``, the second of ``edits[1]``."""
    notebook_id = api.notebook("v = 1", "w = 1")
    first = signed_in(api.user).open(notebook_id)
    second = signed_in(api.user).open(notebook_id)
    replace_code(second, edits[1], ["v", "w"][edits[1]] + " = 'second'")
    replace_code(first, edits[0], ["v", "w"][edits[0]] + " = 'first'")
    return notebook_id, first, second


def replace_code(page: Page, index: int, code: str) -> None:
    cell(page, index).locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(code)


def test_a_second_tab_is_shown_while_it_is_open(signed_in: SignedIn, api: Api) -> None:
    notebook_id = api.notebook("x = 1")
    first = signed_in(api.user).open(notebook_id)
    expect(first.locator("#presence")).to_be_hidden()

    second = signed_in(api.user).open(notebook_id)

    expect(first.locator("#presence")).to_have_text("also here: you in another tab")
    expect(second.locator("#presence")).to_have_text("also here: you in another tab")
    screenshot(first, "presence")
    second.close()
    expect(first.locator("#presence")).to_be_hidden()


def test_another_user_is_refused_and_never_present(
    signed_in: SignedIn, api: Api
) -> None:
    notebook_id = api.notebook("x = 1")
    owner = signed_in(api.user).open(notebook_id)
    stranger = signed_in(f"{api.user}-stranger")
    refused = stranger.context.new_page()

    refused.goto(f"{api.stack.base_url}/#token={stranger.token}&notebook={notebook_id}")
    expect(refused.locator("#toast")).to_contain_text("Cannot open the notebook")
    third = signed_in(api.user).open(notebook_id)

    expect(owner.locator("#presence")).to_have_text("also here: you in another tab")
    expect(third.locator("#presence")).to_have_text("also here: you in another tab")


def test_a_save_over_another_browsers_save_is_refused_and_theirs_can_be_taken(
    signed_in: SignedIn, api: Api
) -> None:
    _notebook_id, first, second = two_editors(signed_in, api, edits=(0, 0))
    first.keyboard.press("Control+s")
    expect(cell(first, 0).locator(".unsaved")).to_be_hidden()

    second.keyboard.press("Control+s")

    conflict = cell(second, 0).locator(".conflict")
    expect(conflict.locator("pre.theirs")).to_have_text("v = 'first'")
    expect(conflict.locator("pre.mine")).to_have_text("v = 'second'")
    conflict.locator("button.take-theirs").click()
    expect(conflict).to_be_hidden()
    expect(cell(second, 0).locator(".cm-content")).to_have_text("v = 'first'")
    assert cell_codes(first) == ["v = 'first'", "w = 1"]


def test_edits_of_different_cells_in_two_browsers_both_stand(
    signed_in: SignedIn, api: Api
) -> None:
    notebook_id, first, second = two_editors(signed_in, api, edits=(0, 1))

    first.keyboard.press("Control+s")
    second.keyboard.press("Control+s")

    for page in (first, second):
        expect(cell(page, 0).locator(".cm-content")).to_have_text("v = 'first'")
        expect(cell(page, 1).locator(".cm-content")).to_have_text("w = 'second'")
        expect(page.locator(".conflict:visible")).to_have_count(0)
    assert api.cell_codes(notebook_id) == ["v = 'first'", "w = 'second'"]
