"""The web UI in a real browser (Debian's Chromium, headless) against the stack.

A notebook is built and run over REST, then opened at
``/#token=...&notebook=ID``, the address that signs in and opens a notebook
in one step. Each test waits for what it expects to see in the page, then
looks at the DOM (and, for the first, a screenshot).
"""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING, Final

import httpx
import pytest

from tests.stack.browser import launch

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.stack.browser import Browser, Page
    from tests.stack.stack_process import RunningStack

CHROMIUM: Final = shutil.which("chromium")
TIMEOUT_S: Final = 60.0
WIDTH, HEIGHT = 1200, 900
EMPTY_PAGE_PNG_BYTES: Final = 20_000
"""A screenshot of the page without its notebook is about 7 kB; with it, far more."""

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="needs Chromium on PATH as `chromium` (Debian: apt-get install chromium)",
)

CELLS: Final = (
    "x = 1",
    "print(x + 1)",
    "import pandas as pd\n"
    'pd.DataFrame({"city": ["Oslo", "Lima"], "people": [0.7, 10.1]})',
)

RENDERED: Final = """
[...document.querySelectorAll("pre.stdout")].some(p => p.textContent === "2\\n")
&& document.querySelector(".output table td")
"""

RECORD_CSP_VIOLATIONS: Final = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) =>
  window.cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`));
"""


def new_notebook(stack: RunningStack, token: str, cells: tuple[str, ...]) -> str:
    """A notebook with ``cells``, created over REST."""
    headers = {"authorization": f"Bearer {token}"}
    base_url = f"{stack.base_url}/api/v1"
    with httpx.Client(base_url=base_url, headers=headers, timeout=TIMEOUT_S) as api:
        created = api.post("/notebooks", json={"name": "Browser"})
        created.raise_for_status()
        notebook_id: str = created.json()["notebook"]["id"]
        for code in cells:
            api.post(f"/notebooks/{notebook_id}/cells", json={"code": code})
    return notebook_id


def run_all(stack: RunningStack, token: str, notebook_id: str) -> list[str]:
    """Run every stale cell over REST; the statuses the cells finished with."""
    url = f"{stack.base_url}/api/v1/notebooks/{notebook_id}:run"
    headers = {"authorization": f"Bearer {token}"}
    statuses = []
    with httpx.stream("POST", url, json={}, headers=headers, timeout=TIMEOUT_S) as run:
        for line in run.iter_lines():
            event = json.loads(line)["event"]
            if "cellFinished" in event:
                statuses.append(event["cellFinished"]["result"]["status"])
    return statuses


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    assert CHROMIUM is not None
    with launch(CHROMIUM, tmp_path_factory.mktemp("chromium-profile")) as running:
        yield running


def open_ui(browser: Browser, url: str) -> Page:
    page = browser.open_page(WIDTH, HEIGHT)
    page.call("Page.enable")
    page.call("Page.addScriptToEvaluateOnNewDocument", source=RECORD_CSP_VIOLATIONS)
    page.navigate(url)
    return page


@pytest.fixture(scope="module")
def ran_notebook(stack: RunningStack) -> tuple[str, str]:
    """A token and a notebook whose cells have all run."""
    token = stack.token("grace")
    notebook_id = new_notebook(stack, token, CELLS)
    assert run_all(stack, token, notebook_id) == ["CELL_STATUS_SUCCESS"] * 3
    return token, notebook_id


def test_the_ui_shows_a_notebook_that_ran(
    stack: RunningStack,
    browser: Browser,
    ran_notebook: tuple[str, str],
    tmp_path: Path,
) -> None:
    token, notebook_id = ran_notebook
    page = open_ui(browser, f"{stack.base_url}/#token={token}&notebook={notebook_id}")
    screenshot = tmp_path / "notebook.png"

    page.wait_until(RENDERED, TIMEOUT_S)
    page.screenshot(screenshot)
    dom = page.dom()

    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert screenshot.stat().st_size > EMPTY_PAGE_PNG_BYTES
    assert '<pre class="stdout">2\n</pre>' in dom
    assert "<td>Oslo</td>" in dom
    assert '<td class="num">10.1</td>' in dom
    assert "2 rows × 2 columns" in dom
    assert dom.count('class="badge status-success"') == 3
    assert page.evaluate("window.cspViolations") == []


def test_the_token_in_the_address_is_kept_and_taken_out_of_it(
    stack: RunningStack, browser: Browser, ran_notebook: tuple[str, str]
) -> None:
    token, notebook_id = ran_notebook
    page = open_ui(browser, f"{stack.base_url}/#token={token}&notebook={notebook_id}")

    page.wait_until(RENDERED, TIMEOUT_S)

    assert page.evaluate("location.hash") == f"#notebook={notebook_id}"
    assert page.evaluate("localStorage.getItem('reflow.token')") == token
    assert page.evaluate("document.querySelector('#user').textContent") == "grace"


def press_shift_enter(page: Page) -> None:
    for kind in ("keyDown", "keyUp"):
        page.call(
            "Input.dispatchKeyEvent",
            type=kind,
            key="Enter",
            code="Enter",
            windowsVirtualKeyCode=13,
            modifiers=8,  # Shift
        )


LIVE_WITH_ONE_CELL: Final = (
    "document.querySelector('#conn.conn-live') && document.querySelector('.editor')"
)
SECOND_EDITOR_FOCUSED: Final = (
    "document.activeElement === document.querySelectorAll('.editor')[1]"
)
EDITOR_TEXTS: Final = "[...document.querySelectorAll('.editor')].map(e => e.value)"
PRINTED_42: Final = (
    "[...document.querySelectorAll('pre.stdout')].some(p => p.textContent === '42\\n')"
)


def test_a_cell_typed_and_run_in_one_browser_shows_in_another(
    stack: RunningStack, browser: Browser
) -> None:
    token = stack.token("grace")
    notebook_id = new_notebook(stack, token, ("a = 40",))
    url = f"{stack.base_url}/#token={token}&notebook={notebook_id}"
    author, watcher = open_ui(browser, url), open_ui(browser, url)
    for page in (author, watcher):
        page.wait_until(LIVE_WITH_ONE_CELL, TIMEOUT_S)

    author.evaluate("document.querySelector('.cell .icon.run').click()")
    author.evaluate("document.querySelector('[data-add=CELL_TYPE_PYTHON]').click()")
    author.wait_until(SECOND_EDITOR_FOCUSED, TIMEOUT_S)
    author.call("Input.insertText", text="print(a + 2)")
    press_shift_enter(author)

    watcher.wait_until(PRINTED_42, TIMEOUT_S)
    codes = watcher.evaluate(EDITOR_TEXTS)
    assert codes == ["a = 40", "print(a + 2)"]
