"""Presence in the page: who else has the notebook open, kept current as
browsers join and leave (WatchNotebook with presence, through Envoy).

A notebook is its owner's alone (DESIGN §5: anyone else gets NOT_FOUND), so
the company a page can show is its owner's other tabs; another user who
tries to open it is refused and never shows up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from playwright.sync_api import expect

from tests.stack.browser import screenshot

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.stack.browser import Api, Session

    SignedIn = Callable[..., Session]


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
