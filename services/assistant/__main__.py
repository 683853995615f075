"""Entry point: python -m services.assistant"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack

from services.assistant.audit import AuditLog
from services.assistant.clients import ExecutionClient, NotebookClient
from services.assistant.config import Settings
from services.assistant.conversation import Assistant
from services.assistant.llm import OpenAIChatModel
from services.assistant.server import build_server
from services.assistant.store import open_store
from services.shared import logs
from services.shared.auth import InternalTokens
from services.shared.config import listen_address, run_service
from services.shared.grpc_client import open_channel
from services.shared.grpc_server import serve
from services.shared.observability import start_observability

logger = logging.getLogger(__name__)


async def main() -> None:
    settings = Settings.from_env()
    logs.configure("assistant", settings.log_level, settings.log_format)
    start_observability("assistant", settings.listen_host, settings.metrics_port)
    tokens = InternalTokens(settings.auth.secret, settings.auth.ttl_s)
    async with AsyncExitStack() as stack:
        model = None
        if settings.model.configured:
            model = OpenAIChatModel(settings.model)
            stack.push_async_callback(model.close)
            logger.info(
                "model %s at %s",
                settings.model.model,
                settings.model.base_url or "OpenAI",
            )
        else:
            logger.warning(
                "no language model configured: Chat answers FAILED_PRECONDITION "
                "until OPENAI_API_KEY or OPENAI_BASE_URL is set"
            )
        notebook_channel = await stack.enter_async_context(
            open_channel(settings.notebook_service_addr)
        )
        execution_channel = await stack.enter_async_context(
            open_channel(settings.execution_service_addr)
        )
        store = await stack.enter_async_context(
            open_store(settings.store, settings.data_dir)
        )
        assistant = Assistant(
            model=model,
            store=store,
            notebooks=NotebookClient(notebook_channel),
            execution=ExecutionClient(execution_channel),
            tokens=tokens,
            audit=AuditLog(settings.audit_log),
            limits=settings.turns,
            tool_limits=settings.tools,
        )
        server, port = build_server(
            assistant,
            store,
            listen_address(settings.listen_host, settings.port),
            tokens,
            settings.turns.max_message_bytes,
        )
        logger.info(
            "assistant service listening on port %d (store: %s, audit log: %s)",
            port,
            settings.store,
            settings.audit_log,
        )
        await serve(server)


if __name__ == "__main__":
    run_service("assistant", main)
