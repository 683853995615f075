"""Import, export and files through Envoy's REST transcoder, on the whole stack:
a Jupyter notebook imported, run on a real kernel, exported in every format
and imported back; malformed files are refused on their field."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any, Final

import httpx
import nbformat
import pytest

from tests.notebook.corpus import CORPUS, as_ipynb

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.stack.stack_process import RunningStack

TIMEOUT_S: Final = 60.0
BAD_REQUEST: Final = "type.googleapis.com/google.rpc.BadRequest"
# Formats whose file imports back, with the import format that reads it.
ROUND_TRIPS: Final = [
    ("EXPORT_FORMAT_IPYNB", "IMPORT_FORMAT_IPYNB"),
    ("EXPORT_FORMAT_PYTHON", "IMPORT_FORMAT_PY_PERCENT"),
    ("EXPORT_FORMAT_MARIMO", "IMPORT_FORMAT_MARIMO"),
]


@pytest.fixture
def api(stack: RunningStack) -> Iterator[httpx.Client]:
    """A REST client signed in as ida."""
    headers = {"authorization": f"Bearer {stack.token('ida')}"}
    base_url = f"{stack.base_url}/api/v1"
    with httpx.Client(base_url=base_url, headers=headers, timeout=TIMEOUT_S) as client:
        yield client


def imported(api: httpx.Client, file_format: str, content: str) -> dict[str, Any]:
    response = api.post(
        "/notebooks:import",
        json={"name": "round trip", "format": file_format, "content": content},
    )
    response.raise_for_status()
    reply: dict[str, Any] = response.json()
    return reply


def run_all(api: httpx.Client, notebook: dict[str, Any]) -> None:
    cell_ids = [c["id"] for c in notebook["cells"] if c["type"] != "CELL_TYPE_MARKDOWN"]
    with api.stream(
        "POST", f"/notebooks/{notebook['id']}:run", json={"cellIds": cell_ids}
    ) as response:
        events = [json.loads(line)["event"] for line in response.iter_lines() if line]
    assert "runFinished" in events[-1]


def cells_of(notebook: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (c.get("type", ""), c.get("code", ""), c.get("resultName", ""))
        for c in notebook["cells"]
    ]


@pytest.fixture
def notebook(api: httpx.Client) -> dict[str, Any]:
    """The self-rebinding corpus notebook, imported and run."""
    reply = imported(api, "IMPORT_FORMAT_IPYNB", as_ipynb(CORPUS["self_rebinding"]))
    run_all(api, reply["notebook"])
    fetched = api.get(f"/notebooks/{reply['notebook']['id']}")
    fetched.raise_for_status()
    result: dict[str, Any] = fetched.json()["notebook"]
    return result


def test_import_answers_notes(api: httpx.Client) -> None:
    reply = imported(api, "IMPORT_FORMAT_IPYNB", as_ipynb(CORPUS["self_rebinding"]))

    assert "`pop` is redefined here: renamed `pop_2`" in [
        n["message"] for n in reply["notes"]
    ]


@pytest.mark.parametrize(("export_format", "import_format"), ROUND_TRIPS)
def test_export_then_import_gives_back_the_same_cells(
    api: httpx.Client, notebook: dict[str, Any], export_format: str, import_format: str
) -> None:
    response = api.get(
        f"/notebooks/{notebook['id']}:export", params={"format": export_format}
    )
    response.raise_for_status()

    again = imported(api, import_format, response.json()["content"])

    assert cells_of(again["notebook"]) == cells_of(notebook)


def test_exported_ipynb_carries_the_run_outputs(
    api: httpx.Client, notebook: dict[str, Any]
) -> None:
    response = api.get(
        f"/notebooks/{notebook['id']}:export", params={"format": "EXPORT_FORMAT_IPYNB"}
    )

    document = nbformat.reads(response.json()["content"], 4)
    nbformat.validate(document)
    printed = [o.get("text") for c in document.cells for o in c.get("outputs", [])]
    assert "[2, 4, 6] 2 REFLOW\n" in printed


def test_exported_html_page_shows_the_outputs(
    api: httpx.Client, notebook: dict[str, Any]
) -> None:
    response = api.get(
        f"/notebooks/{notebook['id']}:export", params={"format": "EXPORT_FORMAT_HTML"}
    )

    assert response.json()["mediaType"] == "text/html"
    assert "[2, 4, 6] 2 REFLOW" in response.json()["content"]


def test_malformed_import_is_a_bad_request_naming_content(api: httpx.Client) -> None:
    response = api.post(
        "/notebooks:import",
        json={"name": "bad", "format": "IMPORT_FORMAT_IPYNB", "content": "{oops"},
    )

    assert response.status_code == 400
    [details] = [d for d in response.json()["details"] if d["@type"] == BAD_REQUEST]
    assert [v["field"] for v in details["fieldViolations"]] == ["content"]


def test_files_put_list_get_delete_over_rest(api: httpx.Client) -> None:
    created = api.post("/notebooks", json={"name": "files"}).json()["notebook"]
    base = f"/notebooks/{created['id']}/files"
    content = base64.b64encode(b"id,km\n1,2.5\n").decode()

    put = api.post(base, json={"path": "data/bikes.csv", "content": content})
    listed = api.get(base)
    got = api.get(f"{base}/data/bikes.csv")
    deleted = api.delete(f"{base}/data/bikes.csv")

    assert put.status_code == 200, put.text
    assert [f["path"] for f in listed.json()["files"]] == ["data/bikes.csv"]
    assert base64.b64decode(got.json()["content"]) == b"id,km\n1,2.5\n"
    assert deleted.status_code == 200
    assert api.get(base).json().get("files", []) == []


def test_file_path_escaping_the_directory_is_a_bad_request(api: httpx.Client) -> None:
    created = api.post("/notebooks", json={"name": "files"}).json()["notebook"]

    response = api.post(
        f"/notebooks/{created['id']}/files",
        json={"path": "../../etc/passwd", "content": ""},
    )

    assert response.status_code == 400
    [details] = [d for d in response.json()["details"] if d["@type"] == BAD_REQUEST]
    assert [v["field"] for v in details["fieldViolations"]] == ["path"]
