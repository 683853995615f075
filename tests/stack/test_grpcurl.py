"""grpcurl through Envoy: reflection, a reactive run, ownership, authentication."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from services.stack.plan import has_assistant
from tests.stack.grpcurl import grpcurl
from tests.stack.tokens import dev_key, new_key, resigned

if TYPE_CHECKING:
    from tests.stack.stack_process import RunningStack

NOTEBOOKS: Final = "reflow.notebook.v1.NotebookService"
EXECUTION: Final = "reflow.execution.v1.ExecutionService"
PUBLIC: Final = {NOTEBOOKS, EXECUTION, "reflow.gateway.v1.GatewayService"} | (
    {"reflow.assistant.v1.AssistantService"} if has_assistant() else set()
)


def create_notebook(stack: RunningStack, token: str, name: str = "grpcurl") -> str:
    result = grpcurl(
        stack.target, f"{NOTEBOOKS}/CreateNotebook", token=token, data={"name": name}
    )
    assert result.returncode == 0, result.stderr
    notebook_id: str = result.messages()[0]["notebook"]["id"]
    return notebook_id


def create_cell(stack: RunningStack, token: str, notebook_id: str, code: str) -> str:
    result = grpcurl(
        stack.target,
        f"{NOTEBOOKS}/CreateCell",
        token=token,
        data={"notebook_id": notebook_id, "code": code},
    )
    assert result.returncode == 0, result.stderr
    cell_id: str = result.messages()[0]["cell"]["id"]
    return cell_id


def test_list_shows_the_public_services_and_no_internal_one(
    stack: RunningStack,
) -> None:
    result = grpcurl(stack.target, "list", token=stack.token("ada"))

    listed = set(result.stdout.split())
    assert result.returncode == 0, result.stderr
    assert listed >= PUBLIC | {"grpc.health.v1.Health"}
    assert not [name for name in listed if "Internal" in name]


def test_describe_shows_rpcs_with_their_comments(stack: RunningStack) -> None:
    result = grpcurl(stack.target, "describe", NOTEBOOKS, token=stack.token("ada"))

    assert result.returncode == 0, result.stderr
    assert f"{NOTEBOOKS} is a service:" in result.stdout
    assert "rpc CreateNotebook" in result.stdout
    assert "// Creates a notebook owned by the caller" in result.stdout


def test_running_a_cell_streams_its_dependants_stdout(stack: RunningStack) -> None:
    token = stack.token("ada")
    notebook_id = create_notebook(stack, token)
    first = create_cell(stack, token, notebook_id, "x = 1")
    create_cell(stack, token, notebook_id, "print(x + 1)")

    result = grpcurl(
        stack.target,
        f"{EXECUTION}/RunCells",
        token=token,
        data={"notebook_id": notebook_id, "cell_ids": [first]},
    )

    events = [message["event"] for message in result.messages()]
    stdout = "".join(e["streamChunk"]["text"] for e in events if "streamChunk" in e)
    finished = [
        e["cellFinished"]["result"]["status"] for e in events if "cellFinished" in e
    ]
    assert result.returncode == 0, result.stderr
    assert stdout == "2\n"
    assert finished == ["CELL_STATUS_SUCCESS", "CELL_STATUS_SUCCESS"]


def test_another_users_notebook_is_not_found(stack: RunningStack) -> None:
    notebook_id = create_notebook(stack, stack.token("ada"))

    result = grpcurl(
        stack.target,
        f"{NOTEBOOKS}/GetNotebook",
        token=stack.token("grace"),
        data={"notebook_id": notebook_id},
    )

    assert result.returncode != 0
    assert "Code: NotFound" in result.stderr


def test_call_without_a_token_is_unauthenticated(stack: RunningStack) -> None:
    result = grpcurl(stack.target, f"{NOTEBOOKS}/ListNotebooks", data={})

    assert "Code: Unauthenticated" in result.stderr


def test_expired_token_is_unauthenticated(stack: RunningStack) -> None:
    key = dev_key(stack.data_dir / "gateway")
    an_hour_ago = int(time.time()) - 3600
    expired = resigned(stack.token("ada"), key, iat=an_hour_ago - 60, exp=an_hour_ago)

    result = grpcurl(stack.target, f"{NOTEBOOKS}/ListNotebooks", token=expired, data={})

    assert "Code: Unauthenticated" in result.stderr
    assert "expired" in result.stderr


def test_token_signed_by_another_key_is_unauthenticated(stack: RunningStack) -> None:
    forged = resigned(stack.token("ada"), new_key())

    result = grpcurl(stack.target, f"{NOTEBOOKS}/ListNotebooks", token=forged, data={})

    assert "Code: Unauthenticated" in result.stderr
