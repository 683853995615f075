"""Notebooks and their files through the web page, in Chromium, on the whole
stack: importing a picked or dropped notebook (with its data files), its
notes, exporting in every format, and the files panel."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import nbformat
from playwright.sync_api import expect

from tests.notebook.corpus import as_ipynb
from tests.stack.browser import csp_violations, screenshot

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.stack.browser import Api, Session

    SignedIn = Callable[..., Session]

DROP_FILES: Final = """
([zone, files]) => {
  const transfer = new DataTransfer();
  for (const [name, text] of files) transfer.items.add(new File([text], name));
  document.querySelector(zone).dispatchEvent(
    new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
}
"""


def test_a_picked_notebook_imports_with_its_notes_and_its_data_file(
    signed_in: SignedIn, api: Api, tmp_path: Path
) -> None:
    notebook = tmp_path / "trips.ipynb"
    notebook.write_text(
        as_ipynb(
            [
                ("code", "import pandas as pd\nx = pd.read_csv('bikes.csv')"),
                ("code", "x = x[x.km > 1]\nprint(len(x))"),
            ]
        )
    )
    data = tmp_path / "bikes.csv"
    data.write_text("km\n0.5\n3\n7\n")
    page = signed_in(api.user).open()
    expect(page.locator("#list-view")).to_be_visible()

    page.set_input_files("#import-file", [notebook, data])

    expect(page.locator("#import-summary")).to_contain_text(
        "Imported “trips”: 2 cells and 1 data file."
    )
    expect(page.locator("#import-notes li").first).to_contain_text("cell 2")
    screenshot(page, "import")
    page.click("#import-open")
    page.click("#run-all")
    expect(page.locator("pre.stdout")).to_have_text("2\n")
    assert csp_violations(page) == []


def test_a_dropped_script_is_imported(signed_in: SignedIn, api: Api) -> None:
    page = signed_in(api.user).open()
    expect(page.locator("#list-view")).to_be_visible()

    page.evaluate(
        DROP_FILES, ["#import-zone", [["dropped.py", "# %%\nx = 1\n# %%\nx = 2\n"]]]
    )

    expect(page.locator("#import-summary")).to_contain_text(
        "Imported “dropped”: 2 cells."
    )
    expect(page.locator("#import-notes li")).not_to_have_count(0)


def test_a_file_that_is_no_notebook_is_refused_with_the_reason(
    signed_in: SignedIn, api: Api
) -> None:
    page = signed_in(api.user).open()
    expect(page.locator("#list-view")).to_be_visible()

    page.evaluate(DROP_FILES, ["#import-zone", [["broken.ipynb", "{not json"]]])

    expect(page.locator("#toast")).to_contain_text("Cannot import broken.ipynb")
    expect(page.locator("#import-result")).to_be_hidden()


def test_the_notebook_exports_in_every_format(signed_in: SignedIn, api: Api) -> None:
    notebook_id = api.notebook("x = 20", "print(x + 1)")
    api.run_all(notebook_id)
    page = signed_in(api.user).open(notebook_id)
    expect(page.locator("pre.stdout")).to_have_text("21\n")

    exported = {}
    for value in (
        "EXPORT_FORMAT_IPYNB",
        "EXPORT_FORMAT_PYTHON",
        "EXPORT_FORMAT_MARIMO",
        "EXPORT_FORMAT_HTML",
    ):
        with page.expect_download() as download:
            page.select_option("#export-format", value)
        exported[value] = (
            download.value.suggested_filename,
            download.value.path().read_text(),
        )
        expect(page.locator("#export-format")).to_have_value("")

    name, ipynb = exported["EXPORT_FORMAT_IPYNB"]
    assert name == "Browser.ipynb"
    cells = nbformat.reads(ipynb, 4).cells
    assert [cell.source for cell in cells] == ["x = 20", "print(x + 1)"]
    assert cells[1].outputs[0].text == "21\n"
    name, script = exported["EXPORT_FORMAT_PYTHON"]
    assert name == "Browser.py"
    assert "x = 20\n" in script
    assert "print(x + 1)\n" in script
    assert "import marimo" in exported["EXPORT_FORMAT_MARIMO"][1]
    name, html = exported["EXPORT_FORMAT_HTML"]
    assert name == "Browser.html"
    assert "21" in html


def test_the_files_panel_uploads_lists_downloads_and_deletes(
    signed_in: SignedIn, api: Api, tmp_path: Path
) -> None:
    notebook_id = api.notebook(
        "print(open('data/in.txt').read())",
        "open('out.txt', 'w').write('written by a cell')",
    )
    upload = tmp_path / "in.txt"
    upload.write_text("uploaded")
    page = signed_in(api.user).open(notebook_id)
    page.on("dialog", lambda dialog: dialog.accept())

    page.click("[data-panel=files]")
    page.fill(".file-folder", "data")
    page.set_input_files(".file-picker", upload)
    expect(page.locator(".file-item[data-path='data/in.txt']")).to_be_visible()

    page.click("#run-all")
    expect(page.locator("pre.stdout")).to_have_text("uploaded\n")
    written = page.locator(".file-item[data-path='out.txt']")
    expect(written).to_be_visible()
    screenshot(page, "files")
    with page.expect_download() as download:
        written.get_by_role("button", name="Download").click()
    assert download.value.path().read_text() == "written by a cell"

    page.evaluate(DROP_FILES, [".files", [["dropped.csv", "a,b\n"]]])
    page.locator(".file-item[data-path='data/in.txt']").get_by_role(
        "button", name="Delete"
    ).click()
    expect(page.locator(".file-item")).to_have_count(2)
    expect(page.locator(".file-item[data-path='data/dropped.csv']")).to_be_visible()
    expect(page.locator(".file-usage")).to_contain_text("Your files take")
    assert csp_violations(page) == []
