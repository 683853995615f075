"""A kernel is a security boundary: attacks from a real cell, through the real stack.

Each test runs, as user alice, a cell that tries something a hostile user
would — read a secret, another user's notebook, a service's memory; signal
another kernel; call an internal service; stop Envoy; exhaust memory,
processes or disk; leave a process behind — and asserts it fails. Then
bob's notebook (whose kernel was running all along) and alice's must still
work. The whole suite runs twice: with the stack started as root (kernels
get a uid each and cgroups), and as an ordinary uid, as on a laptop
(kernels in user namespaces, rlimits).
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pytest

from services.execution.kernel.environment import ALLOWED_PREFIXES
from tests.stack.isolation import (
    OLD_DEV_SECRET,
    Notebook,
    attack_stack,
    user_namespaces_allowed,
)
from tests.stack.stack_process import process_tree, wait_until_gone

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.stack.stack_process import RunningStack

ORDINARY_UID: Final = 65534
SERVICE_COMMAND: Final = re.compile(
    r"services\.(notebook|gateway|assistant|stack)\b|-m services\.execution(\s|$)"
)
ALLOWED_ENVIRONMENT: Final = {
    "PATH",
    "HOME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "PYTHONPATH",
    "LOG_FORMAT",
    "MPLBACKEND",
    "TMPDIR",
    "USER",
    "LOGNAME",
}


@dataclass
class Target:
    """The stack under attack, the attacker's notebook and the victim's."""

    stack: RunningStack
    alice: Notebook
    bob: Notebook
    bob_value: str
    confined_by_uids: bool

    @property
    def secret(self) -> str:
        return (self.stack.data_dir / "internal-secret").read_text().strip()

    def assert_still_serving(self) -> None:
        """Bob's kernel kept its state; alice's notebook still runs cells."""
        assert self.bob.run("print(bob_value)").stdout.strip() == self.bob_value
        assert self.alice.run("print(6 * 7)").stdout.strip() == "42"


@pytest.fixture(scope="module", params=["root", "ordinary-uid"])
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    """A stack started as root or as an ordinary uid, with bob's kernel running."""
    uid = None
    if request.param == "ordinary-uid":
        if not user_namespaces_allowed():
            pytest.skip(
                "this kernel does not let ordinary users create user namespaces"
            )
        uid = ORDINARY_UID
    data_dir = tmp_path_factory.mktemp(f"isolation-{request.param}")
    if uid is not None:
        # pytest's own temporary directory is private to root.
        data_dir = Path(tempfile.mkdtemp(prefix="reflow-isolation-"))
        data_dir.chmod(0o755)
    stack = attack_stack(data_dir / "data", uid)
    try:
        bob = Notebook(stack, "bob")
        alice = Notebook(stack, "alice")
        bob_value = f"bob-private-{secrets.token_hex(8)}"
        assert bob.run(f"bob_value = {bob_value!r}", keep=True).ok
        bob.put_file("private/bob.csv", bob_value.encode())
        yield Target(stack, alice, bob, bob_value, confined_by_uids=uid is None)
        alice.close()
        bob.close()
    finally:
        stack.close()
        if uid is not None:
            shutil.rmtree(data_dir, ignore_errors=True)


def run_json(target: Target, code: str) -> object:
    """Run ``code`` as alice; it prints one JSON value, which is returned."""
    result = target.alice.run(code)
    assert result.ok, result.error
    return json.loads(result.stdout)


def test_the_environment_holds_no_secret(target: Target) -> None:
    environment = run_json(
        target, "import os, json; print(json.dumps(dict(os.environ)))"
    )

    assert isinstance(environment, dict)
    # Numeric libraries' tuning (OPENBLAS_CORETYPE...) passes when the
    # machine sets it, by the kernel's own allow-list.
    tuning = {name for name in environment if name.startswith(ALLOWED_PREFIXES)}
    assert set(environment) - tuning <= ALLOWED_ENVIRONMENT
    assert target.secret not in json.dumps(environment)
    target.assert_still_serving()


def test_proc_shows_only_the_kernels_own_processes(target: Target) -> None:
    seen = run_json(
        target,
        """
import json, os
seen = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    found = {}
    for name in ("cmdline", "environ"):
        try:
            with open(f"/proc/{pid}/{name}", "rb") as file:
                found[name] = file.read().decode(errors="replace")
        except OSError as error:
            found[name] = type(error).__name__
    seen[pid] = found
print(json.dumps(seen))
""",
    )

    assert isinstance(seen, dict)
    commands = " ".join(found["cmdline"] for found in seen.values())
    # Kernels are forks of the zygote and carry its command line; nothing else.
    assert SERVICE_COMMAND.search(commands) is None, commands
    assert "envoy" not in commands
    # The namespace's init, the kernel, and the shell-less listing itself.
    assert len(seen) <= 3, seen
    assert target.secret not in json.dumps(seen)
    target.assert_still_serving()


def test_files_of_the_services_and_of_other_users_are_out_of_reach(
    target: Target,
) -> None:
    data = target.stack.data_dir
    paths = [
        data / "internal-secret",
        data / "gateway" / "dev-issuer-key.pem",
        data / "assistant" / "audit.log",
        *sorted((data / "notebooks").rglob("*")),
        *sorted((data / "notebook-files").rglob("*")),
        data,
        Path("/etc/shadow"),
    ]
    assert any(target.bob.id in str(path) for path in paths)
    assert any(path.name == "bob.csv" for path in paths)
    outcome = run_json(
        target,
        f"""
import json, os
outcome = {{}}
for path in {[str(path) for path in paths]!r}:
    try:
        if os.path.isdir(path):
            outcome[path] = "LISTED " + ",".join(os.listdir(path))
        else:
            with open(path, "rb") as file:
                outcome[path] = "READ " + file.read(64).hex()
    except OSError as error:
        outcome[path] = type(error).__name__
try:
    with open({str(Path(__file__).parents[2] / "services" / "x.py")!r}, "w"):
        outcome["write code"] = "WROTE"
except OSError as error:
    outcome["write code"] = type(error).__name__
print(json.dumps(outcome))
""",
    )

    assert isinstance(outcome, dict)
    reached = {
        path: what
        for path, what in outcome.items()
        if what[:4] in ("READ", "LIST", "WROT")
    }
    assert reached == {}
    target.assert_still_serving()


def test_other_processes_cannot_be_seen_read_or_signalled(target: Target) -> None:
    victims = {"bob's kernel": target.bob.kernel_pid()}
    victims.update(target.stack.child_pids())
    for pid, command in process_tree(target.stack.process.pid).items():
        if "services.execution.kernel.zygote" in command:
            victims["zygote"] = pid
    assert "zygote" in victims
    assert victims["bob's kernel"] > 0
    outcome = run_json(
        target,
        f"""
import json, os, signal
outcome = {{}}
for name, pid in {victims!r}.items():
    tried = []
    try:
        with open(f"/proc/{{pid}}/mem", "rb") as file:
            tried.append("READ")
    except OSError as error:
        tried.append(type(error).__name__)
    for number in (signal.SIGKILL, signal.SIGSTOP, 0):
        try:
            os.kill(pid, number)
            tried.append("SIGNALLED")
        except OSError as error:
            tried.append(type(error).__name__)
    outcome[name] = tried
print(json.dumps(outcome))
""",
    )

    assert isinstance(outcome, dict)
    for name, tried in outcome.items():
        assert "READ" not in tried, (name, tried)
        assert "SIGNALLED" not in tried, (name, tried)
    assert target.bob.kernel_pid() == victims["bob's kernel"]
    target.assert_still_serving()


def test_internal_services_answer_unauthenticated_to_a_kernel(target: Target) -> None:
    env = target.stack.env
    calls = [
        (env["NOTEBOOK_PORT"], "/reflow.notebook.v1.NotebookService/ListNotebooks"),
        (
            env["NOTEBOOK_PORT"],
            "/reflow.notebook.v1.NotebookInternalService/GetDatabaseConnection",
        ),
        (env["EXECUTION_PORT"], "/reflow.execution.v1.ExecutionService/ListKernels"),
        (
            env["ASSISTANT_PORT"],
            "/reflow.assistant.v1.AssistantService/ListConversations",
        ),
        (env["GATEWAY_GRPC_PORT"], "/reflow.notebook.v1.NotebookService/ListNotebooks"),
    ]
    outcome = run_json(
        target,
        f"""
import json, time, grpc, jwt
now = int(time.time())
claims = {{"sub": "bob", "iat": now, "exp": now + 300, "iss": "reflow-gateway",
          "aud": "reflow-internal"}}
forged = jwt.encode(claims, {OLD_DEV_SECRET!r}, algorithm="HS256")
outcome = {{}}
tokens = (("none", ()), ("forged", (("authorization", "Bearer " + forged),)))
for port, method in {calls!r}:
    for label, metadata in tokens:
        with grpc.insecure_channel(f"127.0.0.1:{{port}}") as channel:
            call = channel.unary_unary(method)
            try:
                call(b"", metadata=metadata, timeout=10)
                outcome[f"{{method}} on {{port}} {{label}}"] = "OK"
            except grpc.RpcError as error:
                outcome[f"{{method}} on {{port}} {{label}}"] = error.code().name
print(json.dumps(outcome))
""",
    )

    assert isinstance(outcome, dict)
    assert len(outcome) == 2 * len(calls)
    assert set(outcome.values()) == {"UNAUTHENTICATED"}, outcome
    target.assert_still_serving()


def test_envoy_admin_is_out_of_reach_and_the_public_edge_is_not(target: Target) -> None:
    admin = target.stack.data_dir / "envoy" / "admin.sock"
    assert admin.exists()
    outcome = run_json(
        target,
        f"""
import json, socket, urllib.request
outcome = {{}}
for label, family, address in (
    ("admin socket", socket.AF_UNIX, {str(admin)!r}),
    ("old admin port", socket.AF_INET, ("127.0.0.1", 9901)),
):
    try:
        with socket.socket(family) as sock:
            sock.settimeout(5)
            sock.connect(address)
            sock.sendall(b"POST /quitquitquit HTTP/1.0\\r\\n\\r\\n")
            outcome[label] = "CONNECTED"
    except OSError as error:
        outcome[label] = type(error).__name__
health = "{target.stack.base_url}/api/v1/health"
with urllib.request.urlopen(health, timeout=10) as reply:
    outcome["public health"] = reply.status
print(json.dumps(outcome))
""",
    )

    assert outcome == {
        "admin socket": "FileNotFoundError",
        "old admin port": "ConnectionRefusedError",
        "public health": 200,
    }
    target.assert_still_serving()


def test_an_allocation_past_the_memory_limit_fails_the_cell(target: Target) -> None:
    result = target.alice.run("hog = bytearray(1024 ** 3)")

    assert not result.ok
    assert result.error.startswith("MemoryError"), result
    target.assert_still_serving()


def test_the_memory_limit_holds_for_the_kernels_whole_tree(target: Target) -> None:
    if not target.confined_by_uids:
        pytest.skip("an ordinary user has no cgroups: each process has its RLIMIT_AS")
    # Three processes of 250 MiB each, each under its own address-space
    # limit, 750 MiB together against the kernel's 512 MiB.
    result = target.alice.run(
        """
import subprocess, sys
hog = "b = bytearray(250 * 2**20); import time; time.sleep(20)"
children = [subprocess.Popen([sys.executable, "-c", hog]) for _ in range(3)]
print(sorted(child.wait() for child in children))
"""
    )

    killed = result.ok and "-9" in result.stdout
    kernel_killed = "out of memory (limit 512 MiB)" in result.error
    assert killed or kernel_killed, result
    target.assert_still_serving()


def test_forking_past_the_process_limit_fails(target: Target) -> None:
    outcome = run_json(
        target,
        """
import json, subprocess
children, error = [], None
try:
    for _ in range(200):
        children.append(subprocess.Popen(["sleep", "60"]))
except OSError as caught:
    error = type(caught).__name__
finally:
    for child in children:
        child.kill()
        child.wait()
print(json.dumps({"started": len(children), "error": error}))
""",
    )

    assert isinstance(outcome, dict)
    assert outcome["error"] == "BlockingIOError", outcome
    assert outcome["started"] < 48, outcome
    target.assert_still_serving()


def test_a_restart_leaves_no_process_of_the_kernel_behind(target: Target) -> None:
    marker = f"{secrets.randbelow(10**6)}.{secrets.randbelow(10**6)}"
    result = target.alice.run(
        f"""
import subprocess
subprocess.run(["setsid", "-f", "sleep", "{marker}"], check=True)
subprocess.run(["sh", "-c", "(sleep {marker} &) &"], check=True)
"""
    )
    assert result.ok, result.error
    survivors = _processes_running(f"sleep {marker}")
    assert len(survivors) == 2

    target.alice.restart()

    assert wait_until_gone(survivors, timeout_s=15) == []
    target.assert_still_serving()


def test_the_scratch_disk_is_capped(target: Target) -> None:
    result = target.alice.run(
        """
import os
chunk = b"x" * 2**20
try:
    with open("/tmp/filler", "wb") as file:
        for _ in range(100):
            file.write(chunk)
finally:
    os.remove("/tmp/filler")
"""
    )

    assert not result.ok
    assert "No space left on device" in result.error, result
    target.assert_still_serving()


def _processes_running(command: str) -> list[int]:
    deadline = time.monotonic() + 10
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmdline = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if cmdline.replace(b"\0", b" ").decode().strip() == command:
                    found.append(int(entry.name))
        if len(found) >= 2 or time.monotonic() > deadline:
            return found
        time.sleep(0.1)
