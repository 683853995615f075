"""The assistant through the front door, talking to a scripted model.

Chat streams over gRPC-Web (connect-es, as a browser) and as REST through
Envoy's transcoder (``POST /api/v1/chat/{id}``, one JSON object per line),
and the tools it calls act on the real services as the user. A stack with no
model at all still starts, and Chat says which setting is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import TYPE_CHECKING, Any, Final

import httpx
import pytest

from tests.assistant.model_server import text, tool_call
from tests.stack.conftest import START_TIMEOUT_S
from tests.stack.stack_process import READY_LINE, ROOT, launch, stack_env
from tests.stack.test_grpcweb import web_code  # noqa: F401  (fixture)
from tests.stack.test_websocket import is_reply, new_notebook, receive_until, signed_in

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.assistant.model_server import ScriptedModelServer
    from tests.stack.stack_process import RunningStack

CLIENT: Final = ROOT / "tests" / "stack" / "chat_client.mjs"
TIMEOUT_S: Final = 60.0


@pytest.fixture
def api(stack: RunningStack) -> Iterator[httpx.Client]:
    """A REST client signed in as ada."""
    headers = {"authorization": f"Bearer {stack.token('ada')}"}
    base_url = f"{stack.base_url}/api/v1"
    with httpx.Client(base_url=base_url, headers=headers, timeout=TIMEOUT_S) as client:
        yield client


@pytest.fixture
def notebook_id(api: httpx.Client) -> str:
    response = api.post("/notebooks", json={"name": "chat"})
    response.raise_for_status()
    notebook_id: str = response.json()["notebook"]["id"]
    return notebook_id


def chat_lines(
    api: httpx.Client, notebook_id: str, **body: Any
) -> list[dict[str, Any]]:
    """POST /chat/{id}: the streamed events, one JSON object per line."""
    with api.stream("POST", f"/chat/{notebook_id}", json=body) as response:
        assert response.status_code == 200, response.read()
        return [json.loads(line) for line in response.iter_lines() if line]


def test_rest_chat_streams_one_event_per_line(
    api: httpx.Client, notebook_id: str, model_server: ScriptedModelServer
) -> None:
    model_server.add(text("Hello ", "from ", "the model."))

    events = chat_lines(api, notebook_id, message="Say hello")

    assert list(events[0]) == ["conversationStarted"]
    assert "".join(e["textDelta"]["text"] for e in events if "textDelta" in e) == (
        "Hello from the model."
    )
    assert events[-1]["done"]["usage"]["totalTokens"] == "15"


def test_rest_chat_tools_act_on_the_notebook_as_the_user(
    api: httpx.Client, notebook_id: str, model_server: ScriptedModelServer
) -> None:
    model_server.add(tool_call("create_cell", code="answer = 42"), text("Added."))

    events = chat_lines(api, notebook_id, message="Add a cell")

    finished = [e["toolCallFinished"] for e in events if "toolCallFinished" in e]
    assert finished[0]["ok"] is True
    cells = api.get(f"/notebooks/{notebook_id}").json()["notebook"]["cells"]
    assert [cell["code"] for cell in cells] == ["answer = 42"]


def test_rest_chat_sends_the_users_message_to_the_model(
    api: httpx.Client, notebook_id: str, model_server: ScriptedModelServer
) -> None:
    model_server.add(text("ok"))

    chat_lines(api, notebook_id, message="What is in my notebook?")

    assert model_server.requests[-1]["messages"][-1] == {
        "role": "user",
        "content": "What is in my notebook?",
    }


def test_rest_conversations_are_listed(
    api: httpx.Client, notebook_id: str, model_server: ScriptedModelServer
) -> None:
    model_server.add(text("ok"))
    events = chat_lines(api, notebook_id, message="Remember me")
    conversation_id = events[0]["conversationStarted"]["conversationId"]

    listed = api.get(f"/notebooks/{notebook_id}/conversations").json()
    got = api.get(f"/conversations/{conversation_id}").json()

    assert [c["id"] for c in listed["conversations"]] == [conversation_id]
    assert got["conversation"]["messages"][0]["text"] == "Remember me"


@pytest.fixture
def grpcweb_chat(
    web_code: None,  # noqa: F811  (the imported fixture)
    stack: RunningStack,
    model_server: ScriptedModelServer,
) -> dict[str, Any]:
    """What the gRPC-Web client saw of a chat, as it reported it."""
    node = shutil.which("node")
    assert node is not None, "Node.js (20+) is needed for the gRPC-Web client"
    model_server.add(text("Hi ", "there", "!"))
    result = subprocess.run(
        [node, str(CLIENT), stack.base_url, stack.token("ada")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_grpcweb_chat_streams_its_deltas(grpcweb_chat: dict[str, Any]) -> None:
    assert grpcweb_chat["kinds"] == [
        "conversationStarted",
        "textDelta",
        "textDelta",
        "textDelta",
        "done",
    ]
    assert grpcweb_chat["text"] == "Hi there!"
    assert grpcweb_chat["done"] == {"toolRounds": 0, "totalTokens": 15}


@pytest.fixture(scope="module")
def unconfigured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """A stack as `make run` starts it with no model configured at all."""
    running = launch(stack_env(tmp_path_factory.mktemp("no-model")))
    try:
        running.wait_for_line(READY_LINE, START_TIMEOUT_S)
        yield running
    finally:
        running.close()


def test_stack_without_a_model_serves_and_chat_names_the_setting(
    unconfigured: RunningStack,
) -> None:
    headers = {"authorization": f"Bearer {unconfigured.token('ada')}"}
    with httpx.Client(
        base_url=f"{unconfigured.base_url}/api/v1", headers=headers, timeout=TIMEOUT_S
    ) as client:
        notebook_id = client.post("/notebooks", json={}).json()["notebook"]["id"]

        response = client.post(f"/chat/{notebook_id}", json={"message": "hi"})

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == 9  # FAILED_PRECONDITION
    assert "OPENAI_API_KEY" in body["message"]
    assert body["details"][0]["reason"] == "LLM_NOT_CONFIGURED"


def is_cell_created(message: dict[str, Any]) -> bool:
    return message["type"] == "notebook_event" and "cellCreated" in message["event"]


async def test_websocket_chat_relays_the_turn_and_its_edits(
    stack: RunningStack, model_server: ScriptedModelServer
) -> None:
    token = stack.token("ada")
    notebook_id = new_notebook(stack, token)
    model_server.add(tool_call("create_cell", code="y = 7"), text("Added ", "y."))
    socket = await signed_in(stack, notebook_id, token)

    await socket.send(json.dumps({"type": "chat", "id": 5, "message": "Add y"}))
    # The edit reaches the socket on the notebook's own stream, in its time.
    messages = await receive_until(socket, is_reply(5), is_cell_created)
    await socket.close()

    chat = [m["event"] for m in messages if m["type"] == "chat_event"]
    edits = [m["event"] for m in messages if m["type"] == "notebook_event"]
    assert list(chat[0]) == ["conversationStarted"]
    assert "".join(e["textDelta"]["text"] for e in chat if "textDelta" in e) == (
        "Added y."
    )
    assert [e["cellCreated"]["cell"]["code"] for e in edits if "cellCreated" in e] == [
        "y = 7"
    ]
    assert [m["ok"] for m in messages if m["type"] == "reply"] == [True]
