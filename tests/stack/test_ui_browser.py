"""The web page in Chromium against the whole stack: signing in, the notebook.

Each test sets a notebook up over REST (or through the page), opens it at
``/#token=...&notebook=ID`` (the address that signs in and opens a notebook in
one step), then waits for what it expects the page to show. Screenshots of
the main screens go to ``tests/stack/screenshots/``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from playwright.sync_api import expect

from tests.stack.browser import cell, cell_codes, csp_violations, screenshot

if TYPE_CHECKING:
    from collections.abc import Callable

    from playwright.sync_api import Page

    from tests.stack.browser import Api, Session

    SignedIn = Callable[..., Session]

CELLS: Final = (
    "x = 1",
    "print(x + 1)",
    "import pandas as pd\n"
    'pd.DataFrame({"city": ["Oslo", "Lima"], "people": [0.7, 10.1]})',
)


def typed_into_new_cell(page: Page, code: str) -> None:
    """Type ``code`` into the editor that has the focus (a new cell's)."""
    expect(page.locator(".cm-editor.cm-focused")).to_have_count(1)
    page.keyboard.insert_text(code)


def test_the_page_shows_a_notebook_that_ran(signed_in: SignedIn, api: Api) -> None:
    notebook_id = api.notebook(*CELLS)
    assert api.run_all(notebook_id) == ["CELL_STATUS_SUCCESS"] * 3

    page = signed_in(api.user).open(notebook_id)

    expect(page.locator("pre.stdout")).to_have_text("2\n")
    expect(page.locator(".output table td", has_text="Oslo")).to_be_visible()
    expect(page.locator(".badge.status-success")).to_have_count(3)
    expect(page.locator(".table-info")).to_contain_text("2 rows × 2 columns")
    expect(page.locator(".output th.row-index")).to_have_text(["", "0", "1"])
    expect(page.locator("#kernel")).to_have_text("kernel: idle")
    screenshot(page, "notebook")
    assert csp_violations(page) == []


def test_the_token_in_the_address_is_kept_and_taken_out_of_it(
    signed_in: SignedIn, api: Api
) -> None:
    notebook_id = api.notebook("x = 1")
    session = signed_in(api.user)

    page = session.open(notebook_id)

    assert page.evaluate("location.hash") == f"#notebook={notebook_id}"
    assert page.evaluate("localStorage.getItem('reflow.token')") == session.token
    expect(page.locator("#user")).to_have_text(api.user)


def test_the_page_calls_the_services_with_grpc_web(
    signed_in: SignedIn, api: Api
) -> None:
    notebook_id = api.notebook("x = 1")
    page = signed_in(api.user).context.new_page()
    calls: list[tuple[str, str]] = []
    page.on(
        "request",
        lambda request: calls.append(
            (
                request.url.rsplit("/", 2)[-2] + "/" + request.url.rsplit("/", 1)[-1],
                request.headers.get("content-type", ""),
            )
        ),
    )

    page.goto(f"{api.stack.base_url}/#token={api.token}&notebook={notebook_id}")
    page.locator("#conn.conn-live").wait_for()

    assert (
        "reflow.notebook.v1.NotebookService/WatchNotebook",
        "application/grpc-web+proto",
    ) in calls
    assert (
        "reflow.gateway.v1.GatewayService/GetCurrentUser",
        "application/grpc-web+proto",
    ) in calls
    assert not [url for url, _ in calls if "/api/v1/" in url]


def test_signing_in_with_a_pasted_token_shows_the_list(
    signed_in: SignedIn, api: Api
) -> None:
    session = signed_in(api.user)
    page = session.context.new_page()
    page.goto(api.stack.base_url)
    expect(page.locator("#sign-in-view")).to_be_visible()
    screenshot(page, "sign-in")

    page.fill("#token-input", session.token)
    page.click("#sign-in-form button[type=submit]")

    expect(page.locator("#list-view")).to_be_visible()
    expect(page.locator("#user")).to_have_text(api.user)


def test_a_demo_notebook_created_in_the_page_opens_and_runs(
    signed_in: SignedIn, api: Api
) -> None:
    page = signed_in(api.user).open()
    page.fill("#create-name", "Demo")
    page.check("#create-demo")
    screenshot(page, "list")

    page.click("#create-form button[type=submit]")
    page.locator("#conn.conn-live").wait_for()
    page.click("#run-all")

    expect(page.locator(".badge.status-error")).to_have_count(0)
    expect(page.locator(".output").first).to_be_visible()
    expect(page.locator(".badge.status-running, .badge.status-queued")).to_have_count(0)
    assert page.locator(".badge.status-success").count() >= 2


def test_a_new_notebook_says_its_kernel_has_not_started(
    signed_in: SignedIn, api: Api
) -> None:
    notebook_id = api.notebook("x = 1")

    page = signed_in(api.user).open(notebook_id)

    expect(page.locator("#kernel")).to_have_text("kernel: not started")
    expect(cell(page, 0).locator(".badge")).to_have_text("not run")


def test_the_editor_highlights_numbers_lines_and_searches(
    signed_in: SignedIn, api: Api
) -> None:
    notebook_id = api.notebook("def f(a):\n    return (a + 1)")
    page = signed_in(api.user).open(notebook_id)
    editor = cell(page, 0).locator(".cm-content")

    editor.click()
    page.keyboard.press("Control+End")
    page.keyboard.press("ArrowLeft")

    expect(cell(page, 0).locator(".cm-lineNumbers .cm-gutterElement")).to_have_count(3)
    expect(cell(page, 0).locator(".cm-matchingBracket")).to_have_count(2)
    assert cell(page, 0).locator(".cm-content span").count() > 3  # highlighted
    page.keyboard.press("Control+f")
    expect(page.locator(".cm-search input[name=search]")).to_be_focused()


def test_shift_enter_on_the_last_cell_runs_it_and_adds_a_cell(
    signed_in: SignedIn, api: Api
) -> None:
    notebook_id = api.notebook("a = 40")
    page = signed_in(api.user).open(notebook_id)
    cell(page, 0).locator(".cm-content").click()

    page.keyboard.press("Shift+Enter")
    expect(page.locator("#cells .cell")).to_have_count(2)
    typed_into_new_cell(page, "print(a + 2)")
    page.keyboard.press("Shift+Enter")

    expect(page.locator("pre.stdout")).to_have_text("42\n")
    expect(page.locator("#cells .cell")).to_have_count(3)
    assert cell_codes(page) == ["a = 40", "print(a + 2)", ""]


def test_ctrl_enter_runs_in_place(signed_in: SignedIn, api: Api) -> None:
    notebook_id = api.notebook("print('here')")
    page = signed_in(api.user).open(notebook_id)
    cell(page, 0).locator(".cm-content").click()

    page.keyboard.press("Control+Enter")

    expect(page.locator("pre.stdout")).to_have_text("here\n")
    expect(page.locator("#cells .cell")).to_have_count(1)
    expect(cell(page, 0).locator(".cm-editor")).to_have_class(re.compile("cm-focused"))


def test_command_mode_adds_moves_and_deletes_with_undo(
    signed_in: SignedIn, api: Api
) -> None:
    notebook_id = api.notebook("one = 1", "two = 2")
    page = signed_in(api.user).open(notebook_id)
    cell(page, 0).locator(".cm-content").click()

    page.keyboard.press("Escape")
    expect(cell(page, 0)).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(cell(page, 1)).to_be_focused()
    page.keyboard.press("b")
    expect(page.locator("#cells .cell")).to_have_count(3)
    typed_into_new_cell(page, "three = 3")
    page.keyboard.press("Escape")
    page.keyboard.press("a")
    expect(page.locator("#cells .cell")).to_have_count(4)
    expect(cell(page, 2).locator(".cm-editor.cm-focused")).to_have_count(1)
    page.keyboard.press("Escape")
    page.keyboard.press("d")
    page.keyboard.press("d")
    expect(page.locator("#cells .cell")).to_have_count(3)
    assert cell_codes(page) == ["one = 1", "two = 2", "three = 3"]
    cell(page, 0).focus()
    page.keyboard.press("d")
    page.keyboard.press("d")
    expect(page.locator("#cells .cell")).to_have_count(2)
    page.click("#toast .toast-action")

    expect(page.locator("#cells .cell")).to_have_count(3)
    expect(cell(page, 0).locator(".cm-content")).to_have_text("one = 1")


def test_an_edit_reruns_what_depends_on_it(signed_in: SignedIn, api: Api) -> None:
    notebook_id = api.notebook("x = 1", "print(x * 10)")
    api.run_all(notebook_id)
    page = signed_in(api.user).open(notebook_id)
    expect(page.locator("pre.stdout")).to_have_text("10\n")
    editor = cell(page, 0).locator(".cm-content")

    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text("x = 5")
    page.keyboard.press("Control+Enter")

    expect(page.locator("pre.stdout")).to_have_text("50\n")
    expect(cell(page, 1).locator(".deps")).to_contain_text("after cell 1")
    expect(cell(page, 0).locator(".deps")).to_contain_text("before cell 2")


def test_a_run_behind_another_is_queued_until_interrupted(
    signed_in: SignedIn, api: Api
) -> None:
    notebook_id = api.notebook("import time\ntime.sleep(60)", "y = 2")
    page = signed_in(api.user).open(notebook_id)

    cell(page, 0).locator("button.run").click()
    expect(cell(page, 0).locator(".badge")).to_have_text("running")
    cell(page, 1).locator("button.run").click()
    expect(cell(page, 1).locator(".badge")).to_have_text("queued")
    expect(page.locator("#kernel")).to_have_text("kernel: busy")
    screenshot(page, "running")
    page.click("#interrupt")

    expect(cell(page, 0).locator(".badge")).to_have_text("interrupted")
    expect(cell(page, 1).locator(".badge")).to_have_text("success")


def test_a_name_defined_twice_names_the_other_cell_until_fixed(
    signed_in: SignedIn, api: Api
) -> None:
    notebook_id = api.notebook("z = 1", "z = 2")
    page = signed_in(api.user).open(notebook_id)
    expect(cell(page, 0).locator(".analysis-error")).to_contain_text("cell 2")

    cell(page, 1).locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text("w = 2")
    page.keyboard.press("Control+s")

    expect(page.locator(".analysis-error:visible")).to_have_count(0)


def test_a_cell_typed_and_run_in_one_browser_shows_in_another(
    signed_in: SignedIn, api: Api
) -> None:
    notebook_id = api.notebook("a = 40")
    author = signed_in(api.user).open(notebook_id)
    watcher = signed_in(api.user).open(notebook_id)

    cell(author, 0).locator("button.run").click()
    author.click("[data-add=CELL_TYPE_PYTHON]")
    typed_into_new_cell(author, "print(a + 2)")
    author.keyboard.press("Shift+Enter")

    expect(watcher.locator("pre.stdout")).to_have_text("42\n")
    assert cell_codes(watcher)[:2] == ["a = 40", "print(a + 2)"]


def test_a_save_over_a_newer_edit_of_the_cell_shows_both_versions(
    signed_in: SignedIn, api: Api
) -> None:
    notebook_id = api.notebook("v = 1", "w = 1")
    page = signed_in(api.user).open(notebook_id)
    first = api.cell_ids(notebook_id)[0]
    cell(page, 0).locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text("v = 'mine'")

    api.update_cell(notebook_id, first, "v = 'theirs'")
    expect(cell(page, 0)).to_have_attribute("data-base-stale", "true")
    page.keyboard.press("Control+s")

    conflict = cell(page, 0).locator(".conflict")
    expect(conflict.locator("pre.theirs")).to_have_text("v = 'theirs'")
    expect(conflict.locator("pre.mine")).to_have_text("v = 'mine'")
    screenshot(page, "conflict")
    conflict.locator("button.keep-mine").click()
    expect(conflict).to_be_hidden()
    expect(cell(page, 0).locator(".unsaved")).to_be_hidden()
    assert cell_codes(page) == ["v = 'mine'", "w = 1"]


def test_the_dark_theme_is_switchable(signed_in: SignedIn, api: Api) -> None:
    notebook_id = api.notebook(*CELLS[:2])
    page = signed_in(api.user).open(notebook_id)
    before = page.evaluate("getComputedStyle(document.body).backgroundColor")

    page.click("#theme")

    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    after = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert before != after
    screenshot(page, "dark")
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")


def test_the_narrow_layout_does_not_overflow(signed_in: SignedIn, api: Api) -> None:
    notebook_id = api.notebook(*CELLS)
    api.run_all(notebook_id)

    page = signed_in(api.user, width=390, height=844).open(notebook_id)

    expect(page.locator(".output table")).to_be_visible()
    screenshot(page, "narrow")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_the_dependency_view_draws_the_graph(signed_in: SignedIn, api: Api) -> None:
    notebook_id = api.notebook("a = 1", "b = a + 1", "c = a + b", "d = 4")
    page = signed_in(api.user).open(notebook_id)

    page.click("[data-panel=graph]")

    graph = page.locator("#side-panel svg.graph")
    expect(graph.locator(".node")).to_have_count(4)
    expect(graph.locator(".edge")).to_have_count(3)
    edges = graph.locator(".edge").evaluate_all(
        "edges => edges.map(e => `${e.dataset.from}->${e.dataset.to}`)"
    )
    assert sorted(edges) == ["1->2", "1->3", "2->3"]
    expect(graph.locator(".node[data-cell='1'] text")).to_have_text("cell 1 · a")
    screenshot(page, "dependencies")


def test_a_dataframe_pages_and_sorts_with_its_row_numbers(
    signed_in: SignedIn, api: Api
) -> None:
    notebook_id = api.notebook(
        "import pandas as pd\npd.DataFrame({'n': [(i * 37) % 50 for i in range(50)]})"
    )
    api.run_all(notebook_id)
    page = signed_in(api.user).open(notebook_id)
    table = page.locator(".output .table")
    first_column = table.locator("tbody tr td:nth-of-type(1)")
    expect(table.locator("tbody tr")).to_have_count(20)
    expect(table.locator(".pager")).to_contain_text("rows 1–20 of 50")

    table.locator("button[aria-label='Next rows']").click()
    expect(table.locator("tbody th.row-index").first).to_have_text("20")
    table.locator("thead th.sortable").click()
    expect(first_column.first).to_have_text("0")
    table.locator("thead th.sortable").click()

    expect(first_column.first).to_have_text("49")
    expect(table.locator("thead th.sortable")).to_have_attribute(
        "aria-sort", "descending"
    )
    expect(table.locator(".pager")).to_contain_text("rows 1–20 of 50")


def test_completion_offers_the_names_other_cells_define(
    signed_in: SignedIn, api: Api
) -> None:
    notebook_id = api.notebook("revenue_2026 = 1", "")
    page = signed_in(api.user).open(notebook_id)
    cell(page, 1).locator(".cm-content").click()

    page.keyboard.type("reve")

    option = page.locator(".cm-tooltip-autocomplete li", has_text="revenue_2026")
    expect(option).to_be_visible()
    expect(option).to_contain_text("cell 1")
    option.click()
    expect(cell(page, 1).locator(".cm-content")).to_have_text("revenue_2026")


def test_plotly_and_vega_lite_charts_are_drawn_in_their_frames(
    signed_in: SignedIn, api: Api
) -> None:
    notebook_id = api.notebook(
        "import plotly.graph_objects as go\ngo.Figure(go.Bar(x=['a', 'b'], y=[1, 3]))",
        "import altair as alt, pandas as pd\n"
        "alt.Chart(pd.DataFrame({'x': [1, 2], 'y': [3, 4]})).mark_line()"
        ".encode(x='x', y='y')",
    )
    api.run_all(notebook_id)
    page = signed_in(api.user).open(notebook_id)

    charts = page.locator(".output .chart[data-drawn=true]")
    expect(charts).to_have_count(2)

    plotly = page.frame_locator(".output .chart iframe").nth(0)
    vega = page.frame_locator(".output .chart iframe").nth(1)
    drawn = "#chart[data-drawn=true]"
    expect(plotly.locator(f"{drawn} .main-svg").first).to_be_visible()
    expect(vega.locator(f"{drawn} svg, {drawn} canvas").first).to_be_visible()
    screenshot(page, "charts")
    assert csp_violations(page) == []


def test_an_html_output_keeps_its_styles_and_runs_no_script(
    signed_in: SignedIn, api: Api
) -> None:
    notebook_id = api.notebook(
        "class Page:\n"
        "    def _repr_html_(self):\n"
        "        return ('<style>.hot { color: rgb(200, 0, 0); }</style>'\n"
        "                '<p class=\"hot\">styled</p>'\n"
        '                \'<img src="x" onerror="document.body.dataset.ran = 1">\')\n'
        "Page()",
    )
    api.run_all(notebook_id)
    page = signed_in(api.user).open(notebook_id)

    frame = page.frame_locator(".output .html-frame iframe")
    styled = frame.locator("p.hot")
    expect(styled).to_have_css("color", "rgb(200, 0, 0)")
    expect(frame.locator("body")).not_to_have_attribute("data-ran", "1")
    assert csp_violations(page) == []
