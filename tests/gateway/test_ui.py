"""The web UI the gateway serves: the page, its assets, its config, its CSP."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from services.gateway.app import STATIC_DIR, create_app, ui_routes
from services.gateway.clients import Downstreams
from services.gateway.config import WebSocketSettings
from services.shared.auth import InternalTokens
from tests.gateway.conftest import SECRET

WEB_SOURCE = Path(__file__).parents[2] / "web" / "src"
"""The page's own modules (the bundle also holds CodeMirror's and connect-es's code)."""

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from services.gateway.auth import Identity


class PageParts(HTMLParser):
    """The scripts, stylesheets and inline code of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.script_sources: list[str] = []
        self.stylesheets: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        handlers = [name for name in attributes if name.startswith("on")]
        self.inline += [f"{tag} {name}" for name in handlers]
        if "style" in attributes or tag == "style":
            self.inline.append(f"{tag} style")
        if tag == "script":
            self._in_script = True
            if attributes.get("src"):
                self.script_sources.append(str(attributes["src"]))
            else:
                self.inline.append("script without src")
        if tag == "link" and attributes.get("rel") == "stylesheet":
            self.stylesheets.append(str(attributes["href"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("script body")


def page_parts(html: str) -> PageParts:
    parts = PageParts()
    parts.feed(html)
    return parts


@pytest.fixture
async def client(identity: Identity) -> AsyncIterator[TestClient]:
    """The gateway's whole HTTP app in dev mode; no service is ever called."""
    async with (
        grpc.aio.insecure_channel("127.0.0.1:9") as notebook,
        grpc.aio.insecure_channel("127.0.0.1:9") as execution,
    ):
        app = create_app(
            identity,
            Downstreams(notebook, execution),
            InternalTokens(SECRET),
            WebSocketSettings(),
        )
        with TestClient(app) as test_client:
            yield test_client


def test_root_serves_the_page(client: TestClient) -> None:
    response = client.get("/")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<title>Reflow</title>" in response.text


def test_the_page_has_a_strict_content_security_policy(client: TestClient) -> None:
    response = client.get("/")

    policy = dict(
        directive.strip().split(" ", 1)
        for directive in response.headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"
    assert re.fullmatch(r"'self' 'nonce-[\w-]{24}'", policy["style-src"])
    assert policy["connect-src"] == "'self' ws: wss:"
    assert policy["img-src"] == "'self' data:"
    assert policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe" not in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_page_has_no_inline_script_or_style(client: TestClient) -> None:
    parts = page_parts(client.get("/").text)

    assert parts.inline == []
    assert parts.script_sources == ["/static/dist/app.js"]


def test_each_page_load_has_its_own_style_nonce(client: TestClient) -> None:
    first, second = client.get("/"), client.get("/")

    nonce = re.search(r'name="style-nonce" content="([\w-]+)"', first.text)
    assert nonce is not None
    assert f"'nonce-{nonce.group(1)}'" in first.headers["content-security-policy"]
    assert nonce.group(1) not in second.text


def test_the_pages_script_and_stylesheet_are_served(client: TestClient) -> None:
    parts = page_parts(client.get("/").text)

    script = client.get(parts.script_sources[0])
    stylesheet = client.get(parts.stylesheets[0])

    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.text == (STATIC_DIR / "dist" / "app.js").read_text()
    assert stylesheet.status_code == 200
    assert stylesheet.headers["content-type"].startswith("text/css")


def test_a_missing_asset_is_not_found(client: TestClient) -> None:
    assert client.get("/static/nope.js").status_code == 404


def test_ui_config_in_dev_mode_says_how_to_get_a_token(client: TestClient) -> None:
    response = client.get("/ui/config")

    assert response.json() == {
        "devMode": True,
        "devTokenCommand": "make -s token USER=you",
    }


def test_ui_config_with_an_identity_provider_has_no_dev_hint() -> None:
    with TestClient(Starlette(routes=ui_routes(dev_mode=False))) as client:
        response = client.get("/ui/config")

    assert response.json() == {"devMode": False, "devTokenCommand": ""}


@pytest.mark.parametrize(
    "pattern",
    [r"\.innerHTML\b", r"\.outerHTML\b", r"insertAdjacentHTML", r"document\.write"]
    + [r"\beval\(", r"new Function\(", r"allow-same-origin"],
)
def test_the_pages_own_code_never_parses_data_as_html(pattern: str) -> None:
    sources = {path.name: path.read_text() for path in WEB_SOURCE.glob("*.js")}

    assert sources
    assert [name for name, code in sources.items() if re.search(pattern, code)] == []
