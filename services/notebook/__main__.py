"""Entry point: python -m services.notebook"""

from __future__ import annotations

import logging

from services.notebook.config import Settings
from services.notebook.feed import open_feed
from services.notebook.files.local import LocalFileStore
from services.notebook.manager import NotebookManager
from services.notebook.server import build_server
from services.notebook.store import open_store
from services.shared import logs
from services.shared.auth import InternalTokens
from services.shared.config import listen_address, run_service
from services.shared.grpc_server import serve

logger = logging.getLogger(__name__)


async def main() -> None:
    settings = Settings.from_env()
    logs.configure("notebook", settings.log_level, settings.log_format)
    async with (
        open_store(settings.store, settings.data_dir, settings.dynamodb) as store,
        open_feed(settings.redis_url) as feed,
    ):
        manager = NotebookManager(store, sink=feed)
        verifier = InternalTokens(settings.auth.secret, settings.auth.ttl_s)
        server, port = build_server(
            manager,
            listen_address(settings.listen_host, settings.port),
            verifier,
            settings.max_code_bytes,
            LocalFileStore(settings.files_dir, settings.files),
            feed,
        )
        logger.info(
            "notebook service listening on port %d (store: %s)", port, settings.store
        )
        await serve(server)


if __name__ == "__main__":
    run_service("notebook", main)
