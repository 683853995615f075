"""A headless Chromium driven over the Chrome DevTools Protocol, for the UI test.

Chromium's one-shot ``--screenshot`` and ``--dump-dom`` capture the page once
it has loaded (plus a ``--virtual-time-budget``), and virtual time does not
wait for WebSocket messages: the notebook, which arrives over the socket, is
there in some runs and missing in others. So the browser is started with a
DevTools port instead, and the test waits for what it wants to see (a
condition in the page, with a deadline) before taking the picture and the DOM.

Only the handful of CDP methods this needs, over the ``websockets`` client the
stack tests already use; nothing is installed and no browser is downloaded.
"""

from __future__ import annotations

import base64
import contextlib
import json
import select
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Final

from websockets.sync.client import ClientConnection, connect

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

START_TIMEOUT_S: Final = 30.0
CALL_TIMEOUT_S: Final = 30.0
MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024
"""A screenshot comes back base64-encoded in one message."""

FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--remote-debugging-port=0",
)

WAIT_FOR: Final = """
new Promise((resolve, reject) => {
  const holds = () => Boolean(%s);
  const started = Date.now();
  // Checked on every change to the DOM, and every 50 ms for what is not one
  // (focus, a property such as a textarea's value).
  const check = () => {
    if (holds()) { observer.disconnect(); resolve(true); }
    else if (Date.now() - started > %d) {
      observer.disconnect();
      reject(new Error("not seen in time"));
    }
    else setTimeout(check, 50);
  };
  const observer = new MutationObserver(() => holds() && check());
  observer.observe(document, {subtree: true, childList: true, characterData: true,
                              attributes: true});
  check();
})
"""


class BrowserError(Exception):
    """Chromium did not start, or a DevTools call failed."""


@dataclass
class DevTools:
    """The browser's DevTools connection: commands out, their results back."""

    socket: ClientConnection
    last_id: int = 0

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session_id: str | None = None,
        timeout_s: float = CALL_TIMEOUT_S,
    ) -> dict[str, Any]:
        """One command (to a tab when ``session_id`` is given); events are skipped."""
        self.last_id += 1
        request: dict[str, Any] = {
            "id": self.last_id,
            "method": method,
            "params": params or {},
        }
        if session_id is not None:
            request["sessionId"] = session_id
        self.socket.send(json.dumps(request))
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            reply = json.loads(self.socket.recv(timeout=remaining))
            if reply.get("id") != self.last_id:
                continue
            if "error" in reply:
                raise BrowserError(f"{method}: {reply['error'].get('message')}")
            result: dict[str, Any] = reply["result"]
            return result


@dataclass
class Page:
    """One tab, attached to the browser's connection with a flat session."""

    devtools: DevTools
    session_id: str

    def call(
        self, method: str, timeout_s: float = CALL_TIMEOUT_S, **params: Any
    ) -> dict[str, Any]:
        return self.devtools.call(method, params, self.session_id, timeout_s)

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str, timeout_s: float = CALL_TIMEOUT_S) -> Any:
        """The value of ``expression`` (a promise is awaited)."""
        result = self.call(
            "Runtime.evaluate",
            timeout_s + 5,
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details["text"]
            raise BrowserError(f"{expression.strip()[:60]!r} failed: {text}")
        return result["result"].get("value")

    def wait_until(self, condition: str, timeout_s: float) -> None:
        """Return once the JS ``condition`` holds in the page; BrowserError if not."""
        self.evaluate(WAIT_FOR % (condition, int(timeout_s * 1000)), timeout_s)

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def dom(self) -> str:
        html: str = self.evaluate("document.documentElement.outerHTML")
        return html


@dataclass
class Browser:
    """A running headless Chromium and its DevTools connection."""

    process: subprocess.Popen[bytes]
    devtools: DevTools

    def open_page(self, width: int, height: int) -> Page:
        """A new tab with a ``width`` x ``height`` viewport."""
        target = self.devtools.call("Target.createTarget", {"url": "about:blank"})
        attached = self.devtools.call(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self.devtools, attached["sessionId"])
        # Every tab behaves as the focused one, so focus and keys work in each.
        page.call("Emulation.setFocusEmulationEnabled", enabled=True)
        page.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        return page


def devtools_url(stderr: IO[bytes], timeout_s: float) -> str:
    """The browser's DevTools WebSocket URL, from the line Chromium prints.

    ``stderr`` must be unbuffered, so that select() sees every byte not yet read.
    """
    deadline = time.monotonic() + timeout_s
    seen = []
    while (remaining := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([stderr], [], [], remaining)
        if not ready:
            break
        line = stderr.readline().decode(errors="replace")
        if not line:
            break
        seen.append(line.rstrip())
        if line.startswith("DevTools listening on "):
            return line.removeprefix("DevTools listening on ").strip()
    raise BrowserError("Chromium printed no DevTools URL:\n" + "\n".join(seen[-20:]))


def _drain(stream: IO[bytes]) -> None:
    """Read what Chromium goes on printing, so a full pipe never blocks it."""
    while stream.read(65536):
        pass


@contextlib.contextmanager
def launch(executable: str, profile_dir: Path) -> Iterator[Browser]:
    """Chromium, headless, with a fresh profile in ``profile_dir``; stopped after."""
    process = subprocess.Popen(
        [executable, *FLAGS, f"--user-data-dir={profile_dir}", "about:blank"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    assert process.stderr is not None
    drain = threading.Thread(target=_drain, args=(process.stderr,), daemon=True)
    try:
        url = devtools_url(process.stderr, START_TIMEOUT_S)
        drain.start()
        with connect(url, max_size=MAX_MESSAGE_BYTES, open_timeout=10) as socket:
            yield Browser(process, DevTools(socket))
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if drain.is_alive():
            drain.join(timeout=10)
        process.stderr.close()
