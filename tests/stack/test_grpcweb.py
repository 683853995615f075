"""gRPC-Web through Envoy with connect-es, the client a browser front end uses.

``grpcweb_client.mjs`` runs under Node against the generated code in
``web/gen/`` (``make web-protos``, run here too, is a no-op when current)
and prints what it saw as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import TYPE_CHECKING, Any, Final

import pytest

from tests.stack.stack_process import MAKE_VARIABLES, ROOT

if TYPE_CHECKING:
    from tests.stack.stack_process import RunningStack

CLIENT: Final = ROOT / "tests" / "stack" / "grpcweb_client.mjs"


@pytest.fixture(scope="module")
def web_code() -> None:
    """The connect-es code generated from protos/, up to date."""
    env = {k: v for k, v in os.environ.items() if k not in MAKE_VARIABLES}
    subprocess.run(
        ["make", "--no-print-directory", "-s", "web-protos"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def seen(web_code: None, stack: RunningStack) -> dict[str, Any]:
    """What the gRPC-Web client did and got, as it reported it."""
    node = shutil.which("node")
    assert node is not None, "Node.js (20+) is needed for the gRPC-Web client"
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


def test_unary_call_creates_a_notebook(seen: dict[str, Any]) -> None:
    assert seen["created"]["name"] == "from gRPC-Web"
    assert seen["created"]["id"]


def test_server_stream_delivers_the_run_and_its_stdout(seen: dict[str, Any]) -> None:
    assert seen["eventKinds"][0] == "runStarted"
    assert seen["eventKinds"][-1] == "runFinished"
    assert seen["stdout"] == "2\n"


def test_watch_stream_starts_with_the_snapshot(seen: dict[str, Any]) -> None:
    assert seen["snapshot"] == {"id": seen["created"]["id"], "cells": 2}


def test_error_arrives_with_its_code_and_decoded_details(seen: dict[str, Any]) -> None:
    assert seen["missing"]["code"] == "NotFound"
    assert seen["missing"]["errorInfo"] == {
        "reason": "NOTEBOOK_NOT_FOUND",
        "domain": "reflow",
        "metadata": {"notebook_id": "no-such-notebook"},
    }


def test_call_without_token_is_unauthenticated(seen: dict[str, Any]) -> None:
    assert seen["anonymous"]["code"] == "Unauthenticated"
    assert seen["anonymous"]["errorInfo"]["reason"] == "TOKEN_MISSING"
