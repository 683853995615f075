"""A notebook's files over real gRPC, on every file store: put, list, get,
delete; paths that would leave the notebook's directory, oversized files
and a full quota are refused with nothing stored."""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING

import grpc
import pytest

from reflow.notebook.v1 import notebook_pb2
from services.notebook.errors import FileNotFound
from services.notebook.files import FileLimits, S3Settings
from services.notebook.files.local import LocalFileStore
from services.notebook.files.memory import MemoryFileStore
from services.notebook.files.s3 import S3FileStore, create_bucket, open_s3_client
from services.notebook.manager import NotebookManager
from services.notebook.models import NotebookId
from services.notebook.server import build_server
from services.notebook.store.memory import MemoryStore
from services.shared.auth import InternalTokens
from tests.notebook.conftest import SECRET, Metadata, notebook_stub
from tests.notebook.test_service import bad_fields, rpc_error

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from services.notebook.files import FileStore
    from tests.notebook.conftest import Stub

pb = notebook_pb2
LIMITS = FileLimits(max_file_bytes=100, max_user_bytes=150)


@pytest.fixture(params=["memory", "local", "s3"])
async def files(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[FileStore]:
    if request.param == "local":
        yield LocalFileStore(tmp_path / "files", LIMITS)
    elif request.param == "s3":
        # A bucket of its own on the session's moto server, which serves S3
        # as well as DynamoDB.
        endpoint = request.getfixturevalue("dynamodb_endpoint")
        settings = S3Settings(
            bucket=f"files-{uuid.uuid4().hex[:12]}", endpoint_url=endpoint
        )
        async with open_s3_client(settings) as client:
            await create_bucket(client, settings.bucket)
            yield S3FileStore(client, settings.bucket, LIMITS)
    else:
        yield MemoryFileStore(LIMITS)


@pytest.fixture
async def server(files: FileStore) -> AsyncIterator[tuple[Stub, InternalTokens]]:
    tokens = InternalTokens(SECRET)
    server, port = build_server(
        NotebookManager(MemoryStore()), "127.0.0.1:0", tokens, files=files
    )
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield notebook_stub(channel), tokens
    await server.stop(None)


@pytest.fixture
def stub(server: tuple[Stub, InternalTokens]) -> Stub:
    return server[0]


def who(server: tuple[Stub, InternalTokens], user: str) -> Metadata:
    return (("authorization", f"Bearer {server[1].mint(user)}"),)


@pytest.fixture
def ann(server: tuple[Stub, InternalTokens]) -> Metadata:
    return who(server, "ann")


@pytest.fixture
async def notebook_id(stub: Stub, ann: Metadata) -> str:
    reply = await stub.CreateNotebook(pb.CreateNotebookRequest(), metadata=ann)
    return reply.notebook.id


async def put(
    stub: Stub, user: Metadata, notebook_id: str, path: str, content: bytes
) -> pb.PutFileResponse:
    return await stub.PutFile(
        pb.PutFileRequest(notebook_id=notebook_id, path=path, content=content),
        metadata=user,
    )


async def paths(stub: Stub, user: Metadata, notebook_id: str) -> list[str]:
    reply = await stub.ListFiles(
        pb.ListFilesRequest(notebook_id=notebook_id), metadata=user
    )
    return [f.path for f in reply.files]


async def test_put_then_list_and_get(
    stub: Stub, ann: Metadata, notebook_id: str
) -> None:
    await put(stub, ann, notebook_id, "data/bikes.csv", b"id,km\n1,2\n")
    await put(stub, ann, notebook_id, "notes.txt", b"hi")

    got = await stub.GetFile(
        pb.GetFileRequest(notebook_id=notebook_id, path="data/bikes.csv"), metadata=ann
    )

    assert await paths(stub, ann, notebook_id) == ["data/bikes.csv", "notes.txt"]
    assert (got.content, got.file.size_bytes) == (b"id,km\n1,2\n", 10)


async def test_put_replaces_a_file(stub: Stub, ann: Metadata, notebook_id: str) -> None:
    await put(stub, ann, notebook_id, "a.txt", b"one")

    await put(stub, ann, notebook_id, "a.txt", b"three")

    got = await stub.GetFile(
        pb.GetFileRequest(notebook_id=notebook_id, path="a.txt"), metadata=ann
    )
    assert got.content == b"three"


async def test_delete_file(stub: Stub, ann: Metadata, notebook_id: str) -> None:
    await put(stub, ann, notebook_id, "a.txt", b"x")

    await stub.DeleteFile(
        pb.DeleteFileRequest(notebook_id=notebook_id, path="a.txt"), metadata=ann
    )

    assert await paths(stub, ann, notebook_id) == []


async def test_missing_file_is_not_found(
    stub: Stub, ann: Metadata, notebook_id: str
) -> None:
    error = await rpc_error(
        stub.GetFile(
            pb.GetFileRequest(notebook_id=notebook_id, path="no"), metadata=ann
        )
    )

    assert error.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    "path",
    ["../escape.txt", "/etc/passwd", "a/../../b", "a//b", "./a", "a\\..\\b", "", "c:x"],
)
async def test_path_that_could_escape_is_invalid_and_stores_nothing(
    stub: Stub, ann: Metadata, notebook_id: str, path: str
) -> None:
    error = await rpc_error(put(stub, ann, notebook_id, path, b"x"))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(error) == {"path"}
    assert await paths(stub, ann, notebook_id) == []


async def test_oversized_file_is_refused_and_stores_nothing(
    stub: Stub, ann: Metadata, notebook_id: str
) -> None:
    error = await rpc_error(put(stub, ann, notebook_id, "big.bin", b"x" * 101))

    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await paths(stub, ann, notebook_id) == []


async def test_user_quota_counts_every_notebook_of_the_user(
    stub: Stub, ann: Metadata, notebook_id: str
) -> None:
    other = await stub.CreateNotebook(pb.CreateNotebookRequest(), metadata=ann)
    await put(stub, ann, notebook_id, "a.bin", b"x" * 100)

    error = await rpc_error(put(stub, ann, other.notebook.id, "b.bin", b"x" * 51))

    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await paths(stub, ann, other.notebook.id) == []


async def test_replacing_a_file_counts_only_the_difference(
    stub: Stub, ann: Metadata, notebook_id: str
) -> None:
    await put(stub, ann, notebook_id, "a.bin", b"x" * 100)

    await put(stub, ann, notebook_id, "a.bin", b"y" * 100)

    listed = await stub.ListFiles(
        pb.ListFilesRequest(notebook_id=notebook_id), metadata=ann
    )
    assert (listed.used_bytes, listed.quota_bytes) == (100, 150)


async def test_another_users_notebook_files_are_not_found(
    stub: Stub,
    ann: Metadata,
    notebook_id: str,
    server: tuple[Stub, InternalTokens],
) -> None:
    await put(stub, ann, notebook_id, "a.txt", b"x")

    error = await rpc_error(
        stub.GetFile(
            pb.GetFileRequest(notebook_id=notebook_id, path="a.txt"),
            metadata=who(server, "eve"),
        )
    )

    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_deleting_the_notebook_deletes_its_files(
    stub: Stub, ann: Metadata, notebook_id: str, files: FileStore
) -> None:
    await put(stub, ann, notebook_id, "a.txt", b"x")

    await stub.DeleteNotebook(
        pb.DeleteNotebookRequest(notebook_id=notebook_id), metadata=ann
    )

    assert await files.used_bytes("ann") == 0


async def test_local_store_does_not_follow_a_symbolic_link(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path / "files", LIMITS)
    nb = NotebookId("nb")
    await store.put("ann", nb, "inside.txt", b"x")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"do not read")
    [notebook_dir] = list((tmp_path / "files").glob("*/nb"))
    os.symlink(secret, notebook_dir / "link.txt")
    os.symlink(tmp_path, notebook_dir / "up")

    listed = [f.path for f in await store.listing("ann", nb)]

    assert listed == ["inside.txt"]
    for path in ("link.txt", "up/secret.txt"):
        with pytest.raises(FileNotFound):
            await store.get("ann", nb, path)
    with pytest.raises(FileNotFound):
        await store.put("ann", nb, "up/new/secret.txt", b"overwritten")
    assert secret.read_bytes() == b"do not read"
    assert not (tmp_path / "new").exists()


async def import_with(
    stub: Stub, user: Metadata, *files: tuple[str, bytes]
) -> pb.ImportNotebookResponse:
    return await stub.ImportNotebook(
        pb.ImportNotebookRequest(
            format=pb.IMPORT_FORMAT_PY_PERCENT,
            content="# %%\nimport csv",
            files=[pb.ImportedFile(path=p, content=c) for p, c in files],
        ),
        metadata=user,
    )


async def listed_notebooks(stub: Stub, user: Metadata) -> list[str]:
    reply = await stub.ListNotebooks(pb.ListNotebooksRequest(), metadata=user)
    return [n.id for n in reply.notebooks]


async def test_import_stores_the_data_files_beside_the_notebook(
    stub: Stub, ann: Metadata
) -> None:
    reply = await import_with(stub, ann, ("data/bikes.csv", b"id\n1\n"), ("x", b""))

    assert await paths(stub, ann, reply.notebook.id) == ["data/bikes.csv", "x"]


async def test_import_with_an_escaping_file_path_stores_nothing(
    stub: Stub, ann: Metadata
) -> None:
    error = await rpc_error(import_with(stub, ann, ("ok.csv", b"1"), ("../up", b"2")))

    assert bad_fields(error) == {"files[1].path"}
    assert await listed_notebooks(stub, ann) == []


@pytest.mark.parametrize(
    "data",
    [(("big.bin", b"x" * 101),), (("a.bin", b"x" * 80), ("b.bin", b"x" * 80))],
    ids=["one file too large", "together over the user's quota"],
)
async def test_import_whose_files_do_not_fit_stores_nothing(
    stub: Stub, ann: Metadata, data: tuple[tuple[str, bytes], ...]
) -> None:
    error = await rpc_error(import_with(stub, ann, *data))

    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await listed_notebooks(stub, ann) == []
