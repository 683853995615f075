"""What ``make run`` tells a person once the stack serves: where, and how to try it.

The dev token comes from the gateway's own command (``python -m
services.gateway.devtoken USER``), run as a process like everything else the
stack starts, so the stack never imports the gateway. When the gateway trusts
an external identity provider there is no dev issuer and the command fails;
the banner then says so instead of printing a token.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Mapping

    from services.stack.config import StackSettings

TOKEN_TIMEOUT_S: Final = 30.0
EXTERNAL_ISSUER_VARIABLES: Final = ("GATEWAY_JWKS_URL", "CLERK_FRONTEND_API")
"""Either one makes the gateway trust an identity provider instead of itself."""


@dataclass(frozen=True)
class DevToken:
    """A token minted by the gateway's dev issuer, or why there is none."""

    token: str | None
    problem: str = ""


async def mint_dev_token(user: str, env: Mapping[str, str], cwd: Path) -> DevToken:
    """Run the gateway's devtoken command for ``user``, in dev mode only."""
    for name in EXTERNAL_ISSUER_VARIABLES:
        if env.get(name):
            return DevToken(None, f"{name} is set: the gateway is not a dev issuer")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.gateway.devtoken",
        user,
        env=dict(env),
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), TOKEN_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        return DevToken(None, f"the devtoken command took over {TOKEN_TIMEOUT_S}s")
    lines = out.decode().split()
    if process.returncode != 0 or not lines:
        last = (err.decode().strip().splitlines() or ["no output"])[-1]
        return DevToken(None, last)
    return DevToken(lines[-1])


def tool(name: str) -> str:
    """How a person at the repository root runs a tool from this environment."""
    path = Path(sys.executable).parent / name
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path) if path.is_file() else name


def render_banner(settings: StackSettings, token: DevToken, pids: str) -> str:
    """The block printed once every process is ready."""
    url = settings.url
    target = f"{settings.public_host}:{settings.ports.http}"
    grpcurl = tool("grpcurl")
    auth = '-H "authorization: Bearer $TOKEN"'
    create = shlex.quote('{"name": "My first notebook"}')
    if token.token is None:
        token_lines = [
            f"  No dev token ({token.problem}).",
            "  Use a token from your identity provider as TOKEN.",
        ]
    else:
        token_lines = [
            f"  A dev token for {settings.dev_user!r} (`make token USER=NAME` mints",
            "  others):",
            "",
            f"    export TOKEN={token.token}",
        ]
    lines = [
        "",
        "=" * 72,
        f"  Reflow is running: {url}",
        "  gRPC, gRPC-Web, REST (/api/v1/...) and WebSocket (/ws/notebooks/ID)",
        f"  all on that one port. Processes: {pids}.",
        "",
        *token_lines,
        "",
        "  Try:",
        f"    {grpcurl} -plaintext {auth} {target} list",
        f"    {grpcurl} -plaintext {auth} -d {create} \\",
        f"      {target} reflow.notebook.v1.NotebookService/CreateNotebook",
        f"    curl {auth} {url}/api/v1/notebooks",
        "",
        "  Prometheus metrics:",
        *metrics_lines(settings),
        "",
        "  Ctrl-C stops everything.",
        "=" * 72,
        "",
    ]
    return "\n".join(lines) + "\n"


def metrics_lines(settings: StackSettings) -> list[str]:
    """Where each process serves its metrics, one line each."""
    ports = settings.ports.metrics
    # The services and Envoy's metrics listener are on loopback (plan.py).
    host = "http://127.0.0.1"
    services = {
        "notebook": ports.notebook,
        "execution": ports.execution,
        "assistant": ports.assistant,
        "gateway": ports.gateway,
    }
    lines = [f"    {name:<10} {host}:{port}/metrics" for name, port in services.items()]
    lines.append(f"    {'envoy':<10} {host}:{ports.envoy}/stats/prometheus")
    return lines
