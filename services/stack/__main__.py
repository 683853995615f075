"""Entry point: python -m services.stack (what `make run` starts).

Starts the notebook, execution, assistant (once it exists) and gateway
services and Envoy in front of them, with local file storage under
``REFLOW_DATA_DIR`` (default ``./data``) and the gateway's dev issuer; prints
the URL, a dev token and commands to try once everything answers its health
checks; stops everything on Ctrl-C. See ``runner.py`` for the exit codes and
``config.py`` for the settings.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from services.shared.config import ConfigError
from services.stack.banner import mint_dev_token, render_banner
from services.stack.config import StackSettings
from services.stack.envoy_config import render
from services.stack.plan import (
    DESCRIPTOR,
    LOOPBACK,
    envoy_binary,
    envoy_config_path,
    envoy_options,
    has_assistant,
    plan_stack,
    service_env,
)
from services.stack.processes import Console
from services.stack.runner import RUNNER, run_stack
from services.stack.secret import internal_secret

if TYPE_CHECKING:
    from collections.abc import Sequence

    from services.stack.processes import ChildProcess


def check_ports_free(settings: StackSettings) -> None:
    """ConfigError naming the variable when a port already answers (an old stack?)."""
    for name, port in settings.ports.named().items():
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex((LOOPBACK, port)) == 0:
                raise ConfigError(
                    f"port {port} ({name}) is already in use: is another stack "
                    f"running? Stop it or set {name} to a free port"
                )


async def main() -> int:
    console = Console()
    try:
        settings = StackSettings.from_env()
        if not DESCRIPTOR.is_file():
            raise ConfigError(f"{DESCRIPTOR} is missing: run `make protos`")
        check_ports_free(settings)
        envoy = envoy_binary()
    except ConfigError as error:
        console.line(RUNNER, f"!!! {error}")
        return 2
    assistant = has_assistant()
    try:
        secret = internal_secret(settings.data_dir, os.environ)
    except OSError as error:
        console.line(RUNNER, f"!!! cannot keep the internal secret: {error}")
        return 2
    env = service_env(settings, os.environ, assistant, secret)
    config_path = envoy_config_path(settings)
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(render(envoy_options(settings)))
    cwd = Path.cwd()
    console.line(
        RUNNER,
        f"data under {settings.data_dir.resolve()}; Envoy config {config_path}"
        + ("" if assistant else "; no assistant service yet (not started)"),
    )

    async def on_ready(children: Sequence[ChildProcess]) -> None:
        token = await mint_dev_token(settings.dev_user, env, cwd)
        pids = ", ".join(f"{child.name} {child.pid}" for child in children)
        console.block(render_banner(settings, token, pids))

    members = plan_stack(settings, env, cwd, envoy, assistant)
    return await run_stack(
        members,
        console,
        settings.start_timeout_s,
        settings.stop_timeout_s,
        on_ready,
    )


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
