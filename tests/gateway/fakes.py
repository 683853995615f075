"""Small real stand-ins for the gateway's tests: an execution service, an identity
provider, and a notebook event hub that can be waited on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from reflow.assistant.v1 import assistant_pb2, assistant_pb2_grpc
from reflow.execution.v1 import execution_pb2, execution_pb2_grpc
from reflow.notebook.v1 import notebook_pb2
from services.notebook.changes import Change
from services.shared.auth import current_user
from services.shared.errors import FailedPrecondition, NotFound
from services.shared.fanout import EventHub, Subscription

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import grpc
    from starlette.requests import Request

    Context = grpc.aio.ServicerContext[Any, Any]


class WatchedHub(EventHub[Change]):
    """A notebook event hub whose watcher count can be awaited."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = asyncio.Event()

    @contextlib.asynccontextmanager
    async def subscribe(self, notebook_id: str) -> AsyncIterator[Subscription[Change]]:
        try:
            async with super().subscribe(notebook_id) as subscription:
                self._changed.set()
                yield subscription
        finally:
            self._changed.set()

    async def wait_for_watchers(self, notebook_id: str, count: int) -> None:
        """Return once the notebook has exactly ``count`` watchers."""
        while self.watcher_count(notebook_id) != count:
            self._changed.clear()
            await self._changed.wait()


class FakeExecution(execution_pb2_grpc.ExecutionServiceServicer):
    """An execution service without kernels: every run succeeds at once.

    It records the metadata and deadline of every call, and fans run events
    out to WatchExecution streams as the real service does.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str | bytes], float | None]] = []
        self._watchers: dict[str, set[asyncio.Queue[execution_pb2.ExecutionEvent]]] = (
            defaultdict(set)
        )
        self._changed = asyncio.Event()
        self._sequence = 0
        self._runs = 0

    def metadata_of(self, method: str) -> dict[str, str | bytes]:
        """The metadata of the last call of ``method`` (plus "user": its caller)."""
        return next(m for name, m, _ in reversed(self.calls) if name == method)

    def deadline_of(self, method: str) -> float | None:
        """The time remaining when the last call of ``method`` arrived."""
        return next(t for name, _, t in reversed(self.calls) if name == method)

    async def wait_for_watchers(self, notebook_id: str, count: int) -> None:
        """Return once ``count`` WatchExecution streams watch the notebook."""
        while len(self._watchers[notebook_id]) != count:
            self._changed.clear()
            await self._changed.wait()

    async def RunCells(
        self, request: execution_pb2.RunCellsRequest, context: Context
    ) -> AsyncIterator[execution_pb2.RunCellsResponse]:
        self._record("RunCells", context)
        for event in self._run_events(request):
            for queue in self._watchers[request.notebook_id]:
                queue.put_nowait(event)
            yield execution_pb2.RunCellsResponse(event=event)

    async def WatchExecution(
        self, request: execution_pb2.WatchExecutionRequest, context: Context
    ) -> AsyncIterator[execution_pb2.WatchExecutionResponse]:
        self._record("WatchExecution", context)
        queue: asyncio.Queue[execution_pb2.ExecutionEvent] = asyncio.Queue()
        watchers = self._watchers[request.notebook_id]
        watchers.add(queue)
        self._changed.set()
        try:
            while True:
                event = await queue.get()
                yield execution_pb2.WatchExecutionResponse(event=event)
        finally:
            watchers.discard(queue)
            self._changed.set()

    async def InterruptKernel(
        self, request: execution_pb2.InterruptKernelRequest, context: Context
    ) -> execution_pb2.InterruptKernelResponse:
        self._record("InterruptKernel", context)
        return execution_pb2.InterruptKernelResponse(interrupted=False)

    async def RestartKernel(
        self, request: execution_pb2.RestartKernelRequest, context: Context
    ) -> execution_pb2.RestartKernelResponse:
        self._record("RestartKernel", context)
        kernel = execution_pb2.Kernel(notebook_id=request.notebook_id, owner="alice")
        return execution_pb2.RestartKernelResponse(kernel=kernel)

    async def ListKernels(
        self, request: execution_pb2.ListKernelsRequest, context: Context
    ) -> execution_pb2.ListKernelsResponse:
        self._record("ListKernels", context)
        return execution_pb2.ListKernelsResponse()

    async def ShutdownKernel(
        self, request: execution_pb2.ShutdownKernelRequest, context: Context
    ) -> execution_pb2.ShutdownKernelResponse:
        self._record("ShutdownKernel", context)
        raise NotFound(f"notebook {request.notebook_id!r} has no kernel")

    async def GetKernel(
        self, request: execution_pb2.GetKernelRequest, context: Context
    ) -> execution_pb2.GetKernelResponse:
        self._record("GetKernel", context)
        raise NotFound(f"notebook {request.notebook_id!r} has no kernel")

    async def Complete(
        self, request: execution_pb2.CompleteRequest, context: Context
    ) -> execution_pb2.CompleteResponse:
        self._record("Complete", context)
        return execution_pb2.CompleteResponse(kernel_running=False)

    async def ListVariables(
        self, request: execution_pb2.ListVariablesRequest, context: Context
    ) -> execution_pb2.ListVariablesResponse:
        self._record("ListVariables", context)
        return execution_pb2.ListVariablesResponse(kernel_running=False)

    async def GetTableRows(
        self, request: execution_pb2.GetTableRowsRequest, context: Context
    ) -> execution_pb2.GetTableRowsResponse:
        self._record("GetTableRows", context)
        raise FailedPrecondition(f"table {request.table_id!r} is gone")

    def _record(self, method: str, context: Context) -> None:
        metadata = dict(context.invocation_metadata() or ())
        metadata["user"] = current_user()
        self.calls.append((method, metadata, context.time_remaining()))

    def _run_events(
        self, request: execution_pb2.RunCellsRequest
    ) -> list[execution_pb2.ExecutionEvent]:
        self._runs += 1
        run_id = f"run{self._runs}"
        events = [
            execution_pb2.ExecutionEvent(
                run_started=execution_pb2.RunStarted(cell_ids=request.cell_ids)
            ),
            *(
                execution_pb2.ExecutionEvent(
                    cell_id=cell_id, cell_started=execution_pb2.CellStarted()
                )
                for cell_id in request.cell_ids
            ),
            execution_pb2.ExecutionEvent(
                run_finished=execution_pb2.RunFinished(
                    status=notebook_pb2.CELL_STATUS_SUCCESS
                )
            ),
        ]
        for event in events:
            self._sequence += 1
            event.notebook_id = request.notebook_id
            event.run_id = run_id
            event.sequence = self._sequence
        return events


class FakeAssistant(assistant_pb2_grpc.AssistantServiceServicer):
    """An assistant that echoes the message back, in two deltas, then is done;
    a message of "fail" ends with a ChatError instead. It keeps the requests."""

    def __init__(self) -> None:
        self.requests: list[assistant_pb2.ChatRequest] = []

    async def Chat(
        self, request: assistant_pb2.ChatRequest, context: Context
    ) -> AsyncIterator[assistant_pb2.ChatResponse]:
        self.requests.append(request)
        yield assistant_pb2.ChatResponse(
            conversation_started=assistant_pb2.ConversationStarted(
                conversation_id=f"{current_user()}-1"
            )
        )
        for half in (request.message[:2], request.message[2:]):
            yield assistant_pb2.ChatResponse(
                text_delta=assistant_pb2.TextDelta(text=half)
            )
        if request.message == "fail":
            yield assistant_pb2.ChatResponse(
                error=assistant_pb2.ChatError(code="UNAVAILABLE", message="model down")
            )
        else:
            yield assistant_pb2.ChatResponse(done=assistant_pb2.ChatDone())

    async def ListConversations(
        self, request: assistant_pb2.ListConversationsRequest, context: Context
    ) -> assistant_pb2.ListConversationsResponse:
        return assistant_pb2.ListConversationsResponse()

    async def GetConversation(
        self, request: assistant_pb2.GetConversationRequest, context: Context
    ) -> assistant_pb2.GetConversationResponse:
        raise NotFound(f"conversation {request.conversation_id!r} does not exist")


class IdentityProvider:
    """An OIDC-style issuer: RSA keys, a JWKS endpoint, and tokens it signs."""

    issuer = "https://idp.test"
    audience = "reflow-api"

    def __init__(self) -> None:
        self.requests = 0
        self.url = ""
        """Where its JWKS is served, once it is (``serving_http`` + ``/jwks``)."""
        self._keys: list[tuple[str, rsa.RSAPrivateKey]] = []
        self.rotate()

    @property
    def kid(self) -> str:
        return self._keys[-1][0]

    def rotate(self) -> None:
        """Start signing with a new key, the only one the JWKS then lists."""
        number = len(self._keys) + 1
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._keys = [(f"key-{number}", key)]

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self._keys:
            jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": keys}

    def token(self, user: str = "alice", **claims: Any) -> str:
        """A token for ``user``; ``claims`` override or (as None) remove claims."""
        kid, key = self._keys[-1]
        claims = {"iss": self.issuer, "aud": self.audience, **claims}
        return sign(key, kid, user, **claims)

    def app(self) -> Starlette:
        async def key_set(request: Request) -> JSONResponse:
            self.requests += 1
            return JSONResponse(self.jwks())

        return Starlette(routes=[Route("/jwks", key_set)])


def sign(key: rsa.RSAPrivateKey, kid: str | None, user: str, **claims: Any) -> str:
    """An RS256 token with sub/iat/exp and ``claims`` (a None value removes one)."""
    now = int(time.time())
    payload: dict[str, Any] = {"sub": user, "iat": now, "exp": now + 300}
    payload.update(claims)
    payload = {name: value for name, value in payload.items() if value is not None}
    headers = {} if kid is None else {"kid": kid}
    return jwt.encode(payload, key, algorithm="RS256", headers=headers)
