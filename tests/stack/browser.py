"""The web page in Debian's Chromium, driven by Playwright, for the UI tests.

Playwright (the Python package) drives the system's ``chromium``: nothing is
downloaded. ``make test`` installs Chromium with apt-get when it runs as root;
elsewhere the tests are skipped with the one command that installs it.

Each test gets its own browser context (its own storage, so its own sign-in);
``Session`` opens the page signed in as a user, records Content-Security-Policy
violations, and saves screenshots under ``tests/stack/screenshots/`` (git-
ignored), where CI keeps them as artefacts.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import httpx

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Locator, Page

    from tests.stack.stack_process import RunningStack

CHROMIUM: Final = shutil.which("chromium")
INSTALL_HINT: Final = (
    "needs Debian's Chromium (`make test` installs it when run as root; "
    "otherwise: sudo apt-get install -y chromium)"
)
FLAGS: Final = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
SCREENSHOTS: Final = Path(__file__).parent / "screenshots"
TIMEOUT_MS: Final = 60_000
API_TIMEOUT_S: Final = 60.0

RECORD_CSP_VIOLATIONS: Final = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) =>
  window.cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`));
"""

CELL_CODES: Final = """
[...document.querySelectorAll('#cells .cell')].map(cell =>
  [...cell.querySelectorAll('.cm-line')]
    .map(line => line.querySelector('.cm-placeholder') ? '' : line.textContent)
    .join('\\n'))
"""


def screenshot(page: Page, name: str) -> Path:
    """Save what the page shows as ``screenshots/<name>.png``."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=path)
    return path


@dataclass
class Api:
    """The REST API as one user, to set a notebook up before the page opens it."""

    stack: RunningStack
    user: str
    token: str
    created: list[str] = field(default_factory=list)

    def _client(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.stack.base_url}/api/v1",
            headers={"authorization": f"Bearer {self.token}"},
            timeout=API_TIMEOUT_S,
        )

    def notebook(self, *cells: str, name: str = "Browser") -> str:
        """A new notebook with ``cells`` (Python), returning its id."""
        with self._client() as api:
            created = api.post("/notebooks", json={"name": name})
            created.raise_for_status()
            notebook_id: str = created.json()["notebook"]["id"]
            self.created.append(notebook_id)
            for code in cells:
                api.post(f"/notebooks/{notebook_id}/cells", json={"code": code})
        return notebook_id

    def shut_down_kernels(self) -> None:
        """Stop the kernels of the notebooks made here (a user may have ten)."""
        with self._client() as api:
            for notebook_id in self.created:
                api.delete(f"/notebooks/{notebook_id}/kernel")

    def cell_ids(self, notebook_id: str) -> list[str]:
        return [cell["id"] for cell in self._cells(notebook_id)]

    def cell_codes(self, notebook_id: str) -> list[str]:
        """The stored code of each cell, in order."""
        return [cell.get("code", "") for cell in self._cells(notebook_id)]

    def _cells(self, notebook_id: str) -> list[dict[str, Any]]:
        with self._client() as api:
            got = api.get(f"/notebooks/{notebook_id}")
            got.raise_for_status()
            cells: list[dict[str, Any]] = got.json()["notebook"].get("cells", [])
            return cells

    def update_cell(self, notebook_id: str, cell_id: str, code: str) -> None:
        with self._client() as api:
            api.put(
                f"/notebooks/{notebook_id}/cells/{cell_id}", json={"code": code}
            ).raise_for_status()

    def run_all(self, notebook_id: str) -> list[str]:
        """Run every stale cell; the statuses the cells finished with."""
        return self.run(notebook_id)

    def run(self, notebook_id: str, *cell_ids: str) -> list[str]:
        """Run these cells (none: the stale ones); the statuses they finished with."""
        url = f"{self.stack.base_url}/api/v1/notebooks/{notebook_id}:run"
        headers = {"authorization": f"Bearer {self.token}"}
        statuses = []
        with httpx.stream(
            "POST",
            url,
            json={"cellIds": list(cell_ids)},
            headers=headers,
            timeout=API_TIMEOUT_S,
        ) as run:
            for line in run.iter_lines():
                event = json.loads(line)["event"]
                if "cellFinished" in event:
                    statuses.append(event["cellFinished"]["result"]["status"])
        return statuses

    def restart_kernel(self, notebook_id: str) -> None:
        with self._client() as api:
            api.post(
                f"/notebooks/{notebook_id}/kernel:restart", json={}
            ).raise_for_status()


@dataclass
class Session:
    """One browser context signed in as one user."""

    stack: RunningStack
    context: BrowserContext
    token: str

    def open(self, notebook_id: str | None = None) -> Page:
        """A page at the notebook (or the list), signed in by the address."""
        page = self.context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.add_init_script(RECORD_CSP_VIOLATIONS)
        fragment = f"token={self.token}"
        if notebook_id:
            fragment += f"&notebook={notebook_id}"
        page.goto(f"{self.stack.base_url}/#{fragment}")
        if notebook_id:
            page.locator("#conn.conn-live").wait_for()
        return page


def cell(page: Page, index: int) -> Locator:
    """The ``index``-th cell (0-based) of the open notebook."""
    return page.locator("#cells .cell").nth(index)


def cell_codes(page: Page) -> list[str]:
    codes: list[str] = page.evaluate(CELL_CODES)
    return codes


def csp_violations(page: Page) -> list[Any]:
    violations: list[Any] = page.evaluate("window.cspViolations")
    return violations
