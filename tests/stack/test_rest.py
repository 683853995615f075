"""REST through Envoy's transcoder: every path of DESIGN §2, errors as JSON.

Responses are canonical proto3 JSON (camelCase, defaults left out); errors
are the ``google.rpc.Status`` as JSON with the HTTP status of its code;
server streams arrive as one JSON object per line.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

import httpx
import jwt
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.stack.stack_process import RunningStack

TIMEOUT_S: Final = 60.0
ERROR_INFO: Final = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST: Final = "type.googleapis.com/google.rpc.BadRequest"


@pytest.fixture
def api(stack: RunningStack) -> Iterator[httpx.Client]:
    """A REST client signed in as ada."""
    headers = {"authorization": f"Bearer {stack.token('ada')}"}
    base_url = f"{stack.base_url}/api/v1"
    with httpx.Client(base_url=base_url, headers=headers, timeout=TIMEOUT_S) as client:
        yield client


@pytest.fixture
def notebook_id(api: httpx.Client) -> str:
    response = api.post("/notebooks", json={"name": "REST"})
    response.raise_for_status()
    notebook_id: str = response.json()["notebook"]["id"]
    return notebook_id


def add_cell(api: httpx.Client, notebook_id: str, code: str) -> str:
    response = api.post(f"/notebooks/{notebook_id}/cells", json={"code": code})
    response.raise_for_status()
    cell_id: str = response.json()["cell"]["id"]
    return cell_id


def details_of(body: dict[str, Any], type_url: str) -> list[dict[str, Any]]:
    return [detail for detail in body.get("details", []) if detail["@type"] == type_url]


def test_post_notebooks_creates_one_owned_by_the_caller(api: httpx.Client) -> None:
    response = api.post("/notebooks", json={"name": "Sales"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json()["notebook"]["name"] == "Sales"
    assert response.json()["notebook"]["owner"] == "ada"


def test_get_notebooks_lists_them(api: httpx.Client, notebook_id: str) -> None:
    response = api.get("/notebooks")

    assert response.status_code == 200
    assert notebook_id in [nb["id"] for nb in response.json()["notebooks"]]


def test_get_notebook_returns_it_with_cells(
    api: httpx.Client, notebook_id: str
) -> None:
    cell_id = add_cell(api, notebook_id, "x = 1")

    response = api.get(f"/notebooks/{notebook_id}")

    assert response.status_code == 200
    assert [cell["id"] for cell in response.json()["notebook"]["cells"]] == [cell_id]


def test_put_name_renames(api: httpx.Client, notebook_id: str) -> None:
    response = api.put(f"/notebooks/{notebook_id}/name", json={"name": "Renamed"})

    assert response.status_code == 200
    assert api.get(f"/notebooks/{notebook_id}").json()["notebook"]["name"] == "Renamed"


def test_put_db_sets_the_connection_with_the_password_masked(
    api: httpx.Client, notebook_id: str
) -> None:
    url = "postgresql://analyst:hunter2@db.example.test/sales"

    response = api.put(f"/notebooks/{notebook_id}/db", json={"databaseUrl": url})

    assert response.status_code == 200
    shown = response.json()["notebook"]["databaseUrl"]
    assert "hunter2" not in shown
    assert shown.startswith("postgresql://analyst:")


def test_post_cells_adds_an_analysed_cell(api: httpx.Client, notebook_id: str) -> None:
    response = api.post(f"/notebooks/{notebook_id}/cells", json={"code": "y = x + 1"})

    assert response.status_code == 200
    cell = response.json()["cell"]
    assert (cell["reads"], cell["writes"]) == (["x"], ["y"])


def test_put_cell_replaces_its_code(api: httpx.Client, notebook_id: str) -> None:
    cell_id = add_cell(api, notebook_id, "x = 1")

    response = api.put(
        f"/notebooks/{notebook_id}/cells/{cell_id}", json={"code": "z = 3"}
    )

    assert response.status_code == 200
    assert response.json()["cell"]["writes"] == ["z"]


def test_delete_cell_removes_it(api: httpx.Client, notebook_id: str) -> None:
    cell_id = add_cell(api, notebook_id, "x = 1")

    response = api.delete(f"/notebooks/{notebook_id}/cells/{cell_id}")

    assert response.status_code == 200
    assert "cells" not in api.get(f"/notebooks/{notebook_id}").json()["notebook"]


def test_delete_notebook_removes_it(api: httpx.Client, notebook_id: str) -> None:
    response = api.delete(f"/notebooks/{notebook_id}")

    assert response.status_code == 200
    assert api.get(f"/notebooks/{notebook_id}").status_code == 404


def test_get_health_needs_no_token(stack: RunningStack) -> None:
    response = httpx.get(f"{stack.base_url}/api/v1/health", timeout=TIMEOUT_S)

    assert response.status_code == 200
    assert response.json()["status"] == "SERVING_STATUS_SERVING"


def test_run_streams_one_json_object_per_line(
    api: httpx.Client, notebook_id: str
) -> None:
    first = add_cell(api, notebook_id, "x = 1")
    add_cell(api, notebook_id, "print(x + 1)")

    with api.stream(
        "POST", f"/notebooks/{notebook_id}:run", json={"cellIds": [first]}
    ) as response:
        events = [json.loads(line)["event"] for line in response.iter_lines() if line]

    assert response.status_code == 200
    assert "runStarted" in events[0]
    assert "runFinished" in events[-1]
    # Chunks are batches of output, not lines: only their text is the contract.
    assert (
        "".join(e["streamChunk"]["text"] for e in events if "streamChunk" in e) == "2\n"
    )


def test_chat_route_reaches_the_gateway(api: httpx.Client, notebook_id: str) -> None:
    response = api.post(f"/chat/{notebook_id}", json={"message": "hello"})

    # Mapped and forwarded: the answer is the gateway's (UNIMPLEMENTED while
    # no assistant service is configured; FAILED_PRECONDITION without an
    # LLM; a stream once it talks), never Envoy's "no such path" 404.
    assert response.status_code in (200, 400, 501, 503), response.text
    assert response.headers["content-type"].startswith(
        ("application/json", "application/x-ndjson")
    )


def test_too_long_name_is_400_with_the_field_named(api: httpx.Client) -> None:
    response = api.post("/notebooks", json={"name": "n" * 1000})

    violations = details_of(response.json(), BAD_REQUEST)[0]["fieldViolations"]
    assert response.status_code == 400
    assert response.json()["code"] == 3
    assert [violation["field"] for violation in violations] == ["name"]


def test_missing_notebook_is_404_with_error_info(api: httpx.Client) -> None:
    response = api.get("/notebooks/no-such-notebook")

    assert response.status_code == 404
    assert response.json()["code"] == 5
    assert details_of(response.json(), ERROR_INFO)[0]["reason"] == "NOTEBOOK_NOT_FOUND"


def test_another_users_notebook_is_404(stack: RunningStack, notebook_id: str) -> None:
    response = httpx.get(
        f"{stack.base_url}/api/v1/notebooks/{notebook_id}",
        headers={"authorization": f"Bearer {stack.token('grace')}"},
        timeout=TIMEOUT_S,
    )

    assert response.status_code == 404


def test_request_without_token_is_401(stack: RunningStack) -> None:
    response = httpx.get(f"{stack.base_url}/api/v1/notebooks", timeout=TIMEOUT_S)

    assert response.status_code == 401
    assert response.json()["code"] == 16


def test_path_that_maps_to_no_rpc_is_404(api: httpx.Client) -> None:
    response = api.get("/no-such-thing")

    assert response.status_code == 404


def test_cors_preflight_allows_a_configured_origin(stack: RunningStack) -> None:
    response = httpx.options(
        f"{stack.base_url}/reflow.notebook.v1.NotebookService/CreateNotebook",
        headers={
            "origin": "http://localhost:5173",
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type,x-grpc-web",
        },
        timeout=TIMEOUT_S,
    )

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert "x-grpc-web" in response.headers["access-control-allow-headers"]


def test_cors_exposes_grpc_status_headers_to_an_allowed_origin(
    stack: RunningStack,
) -> None:
    response = httpx.get(
        f"{stack.base_url}/api/v1/health",
        headers={"origin": "https://app.example.test"},
        timeout=TIMEOUT_S,
    )

    exposed = response.headers["access-control-expose-headers"]
    assert {"grpc-status", "grpc-message", "grpc-status-details-bin"} <= {
        header.strip() for header in exposed.split(",")
    }


def test_cors_ignores_an_origin_not_configured(stack: RunningStack) -> None:
    response = httpx.options(
        f"{stack.base_url}/api/v1/notebooks",
        headers={
            "origin": "https://evil.example.test",
            "access-control-request-method": "POST",
        },
        timeout=TIMEOUT_S,
    )

    assert "access-control-allow-origin" not in response.headers


def test_healthz_is_the_gateways(stack: RunningStack) -> None:
    response = httpx.get(f"{stack.base_url}/healthz", timeout=TIMEOUT_S)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_dev_issuer_keys_are_published_through_envoy(stack: RunningStack) -> None:
    token = stack.token("ada")

    response = httpx.get(f"{stack.base_url}/.well-known/jwks.json", timeout=TIMEOUT_S)

    kids = [key["kid"] for key in response.json()["keys"]]
    assert response.status_code == 200
    assert jwt.get_unverified_header(token)["kid"] in kids


@pytest.mark.parametrize(
    ("segment", "field"),
    [("%FF", "request"), ("a%00b", "notebook_id"), ("%C3%A9", "notebook_id")],
)
def test_an_id_that_is_no_id_is_a_400_naming_the_field(
    api: httpx.Client, segment: str, field: str
) -> None:
    response = api.get(f"/notebooks/{segment}")

    assert response.status_code == 400, response.text
    [bad_request] = details_of(response.json(), BAD_REQUEST)
    assert [v["field"] for v in bad_request["fieldViolations"]] == [field]
