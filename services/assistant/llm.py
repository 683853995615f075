"""The language model: one streamed Chat Completions request per model reply.

``ChatModel`` is the one thing the loop (conversation.py) needs from a model:
``stream(system, messages, tools)`` yields ``TextChunk``s as the model writes
and ends with one ``ModelReply`` (the whole text, the tool calls, the token
usage), or raises ``ModelError``. Two implementations:

* ``OpenAIChatModel`` talks to OpenAI or any server with the same API
  (``OPENAI_BASE_URL``) through ``openai.AsyncOpenAI``, with ``stream=True``
  and ``stream_options={"include_usage": True}``. This is the only module
  that imports ``openai``.
* ``ScriptedChatModel`` replays canned replies, for unit tests.

Servers disagree on how they stream tool calls, so the fragments are put
together here (``ToolCallAssembler``) rather than trusted to any one shape:
fragments are keyed by ``index`` (else by ``id``, else by their position in
the chunk); the call's ``id`` and ``name`` are the first non-empty ones seen
(some servers repeat them in every fragment); only ``arguments`` are
concatenated (a server that sends them as a JSON object gets it serialised);
a call that never got an id is given one. A stream that ends without
``[DONE]`` is a normal end. Whether the reply asks for tools is decided by
the calls assembled, never by ``finish_reason`` (servers say "stop" with tool
calls, or "tool_calls" without).

Time: no chunk may take longer than ``read_timeout_s`` to arrive (the first
one included). The loop bounds the whole turn with its own deadline.

Retries: openai's own ``max_retries`` retries a request that failed before
its response started (connection errors, 408/409/429/5xx). A stream that
breaks after it started is tried again only if it has not yielded any text
yet; once the user has seen part of an answer, a failure is reported, never
papered over with a second, different answer.

Prompts, code and keys are never logged above DEBUG, and DEBUG logs sizes
only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import openai

from services.assistant.config import PLACEHOLDER_API_KEY
from services.assistant.models import Message, Role, ToolCall, Usage
from services.shared.logs import redact

if TYPE_CHECKING:
    from collections.abc import (
        AsyncGenerator,
        AsyncIterator,
        Iterable,
        Mapping,
        Sequence,
    )

    from services.assistant.config import ModelSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the model is told about it."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True)
class TextChunk:
    """A piece of the reply's text, as it arrives."""

    text: str


@dataclass(frozen=True)
class ModelReply:
    """The end of one reply: its whole text, the tools it calls, its usage."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)
    finish_reason: str = ""


ModelEvent: TypeAlias = TextChunk | ModelReply


class ModelError(Exception):
    """The model could not answer; ``code`` is a gRPC status code name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ChatModel(Protocol):
    """A model that answers a conversation, possibly by calling tools."""

    def stream(
        self, system: str, messages: Sequence[Message], tools: Sequence[ToolSpec]
    ) -> AsyncGenerator[ModelEvent, None]:
        """Text chunks as they come, then one ModelReply; ModelError on failure."""
        ...


# --- assembling tool calls from fragments


@dataclass
class _Slot:
    position: int
    index: int | None
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ToolCallAssembler:
    """Puts streamed tool-call fragments together (see the module docstring)."""

    def __init__(self) -> None:
        self._slots: list[_Slot] = []

    def add(self, fragments: Sequence[object]) -> None:
        """Take the ``delta.tool_calls`` of one chunk."""
        for position, fragment in enumerate(fragments):
            slot = self._slot_for(fragment, position)
            slot.id = slot.id or _text(_get(fragment, "id"))
            function = _get(fragment, "function")
            slot.name = slot.name or _text(_get(function, "name"))
            arguments = _get(function, "arguments")
            if isinstance(arguments, str):
                slot.arguments.append(arguments)
            elif isinstance(arguments, dict):
                slot.arguments.append(json.dumps(arguments))

    def calls(self) -> tuple[ToolCall, ...]:
        """The calls so far, in the order they started."""
        return tuple(
            ToolCall(
                id=slot.id or f"call_{uuid.uuid4().hex[:24]}",
                name=slot.name,
                arguments_json="".join(slot.arguments) or "{}",
            )
            for slot in self._slots
        )

    def _slot_for(self, fragment: object, position: int) -> _Slot:
        index = _get(fragment, "index")
        if isinstance(index, int) and not isinstance(index, bool):
            for slot in self._slots:
                if slot.index == index:
                    return slot
            return self._new(position, index)
        call_id = _text(_get(fragment, "id"))
        for slot in reversed(self._slots):
            if slot.index is None and (
                (call_id and slot.id == call_id)
                or (not call_id and slot.position == position)
            ):
                return slot
        return self._new(position, None)

    def _new(self, position: int, index: int | None) -> _Slot:
        slot = _Slot(position, index)
        self._slots.append(slot)
        return slot


def _get(value: object, name: str) -> object:
    """``value.name`` or ``value[name]``; None when it has neither."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get(name)
    return getattr(value, name, None)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


# --- the OpenAI client


class _StreamBroke(Exception):
    """A started stream failed; retried only if no text was yielded."""

    def __init__(self, error: ModelError) -> None:
        super().__init__(error.message)
        self.error = error


class OpenAIChatModel:
    """Chat Completions through ``openai.AsyncOpenAI``, streamed."""

    def __init__(self, settings: ModelSettings) -> None:
        self._settings = settings
        self._client = openai.AsyncOpenAI(
            # A local server needs no key, but the client insists on one.
            api_key=settings.api_key or PLACEHOLDER_API_KEY,
            base_url=settings.base_url,
            max_retries=settings.max_retries,
            timeout=openai.Timeout(
                settings.read_timeout_s, connect=settings.connect_timeout_s
            ),
        )

    async def close(self) -> None:
        """Close the client's connections."""
        await self._client.close()

    async def stream(
        self, system: str, messages: Sequence[Message], tools: Sequence[ToolSpec]
    ) -> AsyncGenerator[ModelEvent, None]:
        request = _request(self._settings.model, system, messages, tools)
        logger.debug(
            "model request: %d messages, %d tools, %d characters",
            len(request["messages"]),
            len(tools),
            len(json.dumps(request)),
        )
        attempt = 0
        while True:
            yielded = False
            try:
                async for event in self._attempt(request):
                    yielded = yielded or isinstance(event, TextChunk)
                    yield event
                return
            except _StreamBroke as broke:
                if yielded or attempt >= self._settings.max_retries:
                    raise broke.error from None
                attempt += 1
                logger.warning(
                    "the model's stream broke before any text (%s); retry %d of %d",
                    broke.error.message,
                    attempt,
                    self._settings.max_retries,
                )

    async def _attempt(self, request: dict[str, Any]) -> AsyncIterator[ModelEvent]:
        try:
            async with asyncio.timeout(self._settings.read_timeout_s):
                stream = await self._client.chat.completions.create(**request)
        except TimeoutError:
            raise self._silent() from None
        except openai.APIError as error:
            # openai has already retried what was worth retrying.
            raise _model_error(error, self._settings) from None
        async with stream:
            parts: list[str] = []
            assembler = ToolCallAssembler()
            usage = Usage()
            finish_reason = ""
            chunks = aiter(stream)
            while True:
                try:
                    async with asyncio.timeout(self._settings.read_timeout_s):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise _StreamBroke(self._silent()) from None
                except openai.APIError as error:
                    raise _StreamBroke(_model_error(error, self._settings)) from None
                usage = _usage(chunk) or usage
                for choice in _choices(chunk):
                    delta = _get(choice, "delta")
                    content = _text(_get(delta, "content"))
                    if content:
                        parts.append(content)
                        yield TextChunk(content)
                    fragments = _get(delta, "tool_calls")
                    if isinstance(fragments, list):
                        assembler.add(fragments)
                    finish_reason = (
                        _text(_get(choice, "finish_reason")) or finish_reason
                    )
        yield ModelReply("".join(parts), assembler.calls(), usage, finish_reason)

    def _silent(self) -> ModelError:
        return ModelError(
            "DEADLINE_EXCEEDED",
            f"the model sent nothing for {self._settings.read_timeout_s:g} s "
            "(ASSISTANT_READ_TIMEOUT_S)",
        )


def _request(
    model: str, system: str, messages: Sequence[Message], tools: Sequence[ToolSpec]
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": system},
            *(_message(m) for m in messages),
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if tools:
        request["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": dict(tool.parameters),
                },
            }
            for tool in tools
        ]
    return request


def _message(message: Message) -> dict[str, Any]:
    if message.role is Role.TOOL:
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id,
            "content": message.text,
        }
    if message.role is Role.ASSISTANT and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.text or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments_json},
                }
                for call in message.tool_calls
            ],
        }
    return {"role": message.role.value, "content": message.text}


def _choices(chunk: object) -> list[object]:
    choices = _get(chunk, "choices")
    if not isinstance(choices, list):
        return []
    # One answer was asked for; a server that sends more gets its first one.
    return [c for c in choices if _get(c, "index") in (0, None)][:1]


def _usage(chunk: object) -> Usage | None:
    usage = _get(chunk, "usage")
    if usage is None:
        return None
    counts = [_get(usage, name) for name in _USAGE_FIELDS]
    return Usage(*(count if isinstance(count, int) else 0 for count in counts))


_USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


def _model_error(error: openai.APIError, settings: ModelSettings) -> ModelError:
    """What to tell the user about ``error``; its text is redacted, to be safe."""
    where = settings.base_url or "OpenAI"
    detail = redact(str(getattr(error, "message", "") or error))[:300]
    if isinstance(error, openai.APITimeoutError):
        return ModelError("DEADLINE_EXCEEDED", f"the model at {where} timed out")
    if isinstance(error, openai.APIConnectionError):
        return ModelError("UNAVAILABLE", f"cannot reach the model at {where}")
    if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
        return ModelError(
            "FAILED_PRECONDITION",
            f"the model at {where} refused the API key: check OPENAI_API_KEY",
        )
    if isinstance(error, openai.NotFoundError):
        return ModelError(
            "FAILED_PRECONDITION",
            f"the model {settings.model!r} was not found at {where}: "
            "check ASSISTANT_MODEL and OPENAI_BASE_URL",
        )
    if isinstance(error, openai.RateLimitError):
        return ModelError(
            "RESOURCE_EXHAUSTED", f"the model is rate-limited; try later ({detail})"
        )
    if isinstance(error, openai.BadRequestError | openai.UnprocessableEntityError):
        return ModelError("FAILED_PRECONDITION", f"the model refused: {detail}")
    return ModelError("UNAVAILABLE", f"the model failed: {detail}")


# --- a scripted model, for tests


@dataclass(frozen=True)
class ScriptedReply:
    """One canned reply: its text (streamed a word at a time) and tool calls."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)
    # Raised after the text, instead of ending the reply.
    error: ModelError | None = None


@dataclass(frozen=True)
class ModelRequest:
    """What a ScriptedChatModel was asked."""

    system: str
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...]


class ScriptedChatModel:
    """Replays ScriptedReplies in order and records every request."""

    def __init__(self, replies: Iterable[ScriptedReply]) -> None:
        self._replies = deque(replies)
        self.requests: list[ModelRequest] = []

    async def stream(
        self, system: str, messages: Sequence[Message], tools: Sequence[ToolSpec]
    ) -> AsyncGenerator[ModelEvent, None]:
        self.requests.append(ModelRequest(system, tuple(messages), tuple(tools)))
        if not self._replies:
            raise ModelError("UNAVAILABLE", "the script has no more replies")
        reply = self._replies.popleft()
        for word in re.split(r"(?<= )", reply.text):
            if word:
                yield TextChunk(word)
        if reply.error is not None:
            raise reply.error
        yield ModelReply(reply.text, reply.tool_calls, reply.usage)
