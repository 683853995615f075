"""The page asks the kernel (through Envoy, with gRPC-Web): completions,
the variables panel, and table rows beyond those a cell's output carried.
Each waits on what the page shows, in Chromium against the whole stack."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from playwright.sync_api import expect

from tests.stack.browser import cell, screenshot

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.stack.browser import Api, Session

    SignedIn = Callable[..., Session]

# Prints numbered lines until interrupted.
ENDLESS: Final = (
    "import time\nn = 0\nwhile True:\n    print(n)\n    n += 1\n    time.sleep(0.05)"
)


def test_completion_offers_what_the_kernel_knows(signed_in: SignedIn, api: Api) -> None:
    notebook_id = api.notebook("import pandas as pd", "")
    api.run_all(notebook_id)
    page = signed_in(api.user).open(notebook_id)
    cell(page, 1).locator(".cm-content").click()

    page.keyboard.type("pd.read_cs")

    option = page.locator(".cm-tooltip-autocomplete li", has_text="read_csv")
    expect(option).to_be_visible()
    option.click()
    expect(cell(page, 1).locator(".cm-content")).to_have_text("pd.read_csv")


def test_the_variables_panel_answers_while_a_cell_runs(
    signed_in: SignedIn, api: Api
) -> None:
    notebook_id = api.notebook("numbers = [1, 2, 3]", ENDLESS)
    api.run(notebook_id, api.cell_ids(notebook_id)[0])
    page = signed_in(api.user).open(notebook_id)
    cell(page, 1).locator("button.run").click()
    expect(cell(page, 1).locator(".badge")).to_have_text("running")

    page.click("[data-panel=variables]")

    numbers = page.locator(".variables tr[data-name=numbers]")
    expect(numbers).to_contain_text("list")
    expect(numbers).to_contain_text("[1, 2, 3]")
    expect(numbers).to_contain_text("cell 1")
    expect(cell(page, 1).locator(".badge")).to_have_text("running")
    screenshot(page, "variables")
    page.click("#interrupt")
    expect(cell(page, 1).locator(".badge")).to_have_text("interrupted")
    expect(page.locator(".variables tr[data-name=n]")).to_contain_text("cell 2")


def test_a_table_pages_past_the_rows_its_output_carried(
    signed_in: SignedIn, api: Api
) -> None:
    notebook_id = api.notebook(
        "import pandas as pd\npd.DataFrame({'n': [i * 2 for i in range(250)]})"
    )
    api.run_all(notebook_id)
    page = signed_in(api.user).open(notebook_id)
    table = page.locator(".output .table")
    expect(table.locator(".pager")).to_contain_text("rows 1–20 of 250")

    for _ in range(5):
        table.locator("button[aria-label='Next rows']:enabled").click()

    expect(table.locator("tbody th.row-index").first).to_have_text("100")
    expect(table.locator("tbody tr td").first).to_have_text("200")
    expect(table.locator(".table-info")).to_contain_text("200 loaded")


def test_a_table_of_a_restarted_kernel_says_to_rerun_its_cell(
    signed_in: SignedIn, api: Api
) -> None:
    notebook_id = api.notebook("import pandas as pd\npd.DataFrame({'n': range(150)})")
    api.run_all(notebook_id)
    page = signed_in(api.user).open(notebook_id)
    table = page.locator(".output .table")
    expect(table.locator(".pager")).to_contain_text("rows 1–20 of 150")
    api.restart_kernel(notebook_id)

    for _ in range(5):
        table.locator("button[aria-label='Next rows']:enabled").click()

    expect(table.locator(".table-problem")).to_contain_text("re-run cell 1")
    expect(table.locator(".pager")).to_contain_text("of 100")
