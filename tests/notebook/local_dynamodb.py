"""A local DynamoDB for the tests: moto's server on a free loopback port.

moto's ThreadedMotoServer handles requests on as many threads as arrive, but
moto's DynamoDB is not thread-safe: it checks a conditional write and then
applies it without a lock, and rolls a cancelled transaction back by putting
back a copy of the whole table taken when it began, which silently undoes
any write another thread made meanwhile. Real DynamoDB never loses an
acknowledged conditional write, and the store relies on exactly that, so
this server runs moto's WSGI application behind one lock: connections are
concurrent, requests are applied one at a time.
"""

from __future__ import annotations

import logging
import threading
import uuid
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, Final

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from services.notebook.store import DynamoDBSettings
from services.notebook.store.dynamodb import create_table, open_dynamodb_client

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable, Iterator

FAKE_AWS_ENV: Final = {
    # moto accepts any credentials; these keep the SDK from looking further
    # (config files, the EC2 metadata service) for real ones.
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}

_STOP_TIMEOUT_S: Final = 10.0


@contextmanager
def serve_moto() -> Iterator[str]:
    """Run a moto server on 127.0.0.1 for the block; yield its endpoint URL."""
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def one_at_a_time(
        environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        with lock:
            # moto builds the whole body inside the call, so the lock covers
            # the request's effect on the backend.
            return list(app(environ, start_response))

    # werkzeug logs every request at INFO: thousands of lines per test run.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server(
        "127.0.0.1", 0, one_at_a_time, threaded=True, request_handler=MotoRequestHandler
    )
    thread = threading.Thread(target=server.serve_forever, name="moto", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=_STOP_TIMEOUT_S)


@asynccontextmanager
async def fresh_table(endpoint: str) -> AsyncIterator[DynamoDBSettings]:
    """A new, uniquely named notebook table on endpoint, dropped afterwards
    (moto keeps everything in memory)."""
    settings = DynamoDBSettings(
        table=f"notebooks-{uuid.uuid4().hex[:12]}", endpoint_url=endpoint
    )
    async with open_dynamodb_client(settings) as client:
        await create_table(client, settings.table)
        try:
            yield settings
        finally:
            await client.delete_table(TableName=settings.table)
