"""Entry point: python -m services.execution"""

from __future__ import annotations

import logging

from services.execution.clients import NotebookClient
from services.execution.config import Settings
from services.execution.files import WorkdirSync
from services.execution.follow import ChangeFollower
from services.execution.kernel.launcher import KernelLauncher
from services.execution.kernel.zygote_client import SandboxUnavailable
from services.execution.recorder import ResultRecorder
from services.execution.server import build_server
from services.execution.sessions import SessionManager
from services.shared import logs
from services.shared.auth import InternalTokens
from services.shared.config import ConfigError, listen_address, run_service
from services.shared.grpc_client import open_channel
from services.shared.grpc_server import serve
from services.shared.observability import start_observability

logger = logging.getLogger(__name__)


async def main() -> None:
    settings = Settings.from_env()
    logs.configure("execution", settings.log_level, settings.log_format)
    start_observability("execution", settings.listen_host, settings.metrics_port)
    tokens = InternalTokens(settings.auth.secret, settings.auth.ttl_s)
    launcher = KernelLauncher(
        use_zygote=settings.kernels.use_zygote, sandbox=settings.kernels.sandbox
    )
    try:
        await launcher.start()
    except SandboxUnavailable as error:
        # Refuse to run rather than run kernels that can reach everything.
        await launcher.close()
        raise ConfigError(error.message) from None
    async with open_channel(settings.notebook_service_addr) as channel:
        notebooks = NotebookClient(channel)
        recorder = ResultRecorder(notebooks, tokens)
        follower = ChangeFollower(notebooks, tokens)
        workdirs = WorkdirSync(
            notebooks, tokens, confined=settings.kernels.sandbox is not None
        )
        sessions = SessionManager(
            launcher, settings.kernels, recorder, follower, workdirs
        )
        server, port = build_server(
            sessions,
            notebooks,
            listen_address(settings.listen_host, settings.port),
            tokens,
            settings.replica_id,
        )
        logger.info(
            "execution service listening on port %d (notebook service at %s)",
            port,
            settings.notebook_service_addr,
        )
        try:
            await serve(server)
        finally:
            await sessions.close()
            await recorder.close()
            await launcher.close()


if __name__ == "__main__":
    run_service("execution", main)
