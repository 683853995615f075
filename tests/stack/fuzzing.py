"""Hypothesis strategies for hostile requests, built from the public contracts.

Requests are generated from the message descriptors, so a field added to a
contract is fuzzed without a change here: strings of every kind (control
characters, NULs, non-ASCII, now and then a megabyte), integers at their
limits, enum numbers that name nothing, nested and repeated fields. Ids are
drawn partly from ``known_ids`` (a real notebook and cell of the caller), so
some requests get past "not found" into the validation and work behind it.
``mutated`` then damages a valid serialization byte by byte: cut short, bits
flipped, bytes spliced in, which is how invalid UTF-8 and truncated messages
reach the services.

The REST side derives each route from the ``google.api.http`` annotations
and fills its path with segments no id should hold (``%FF``, ``%00``, ``..``).

``EXAMPLES`` is small inside ``make test``; ``make fuzz`` sets
``REFLOW_FUZZ_EXAMPLES`` for a longer run.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import grpc
from google.api import annotations_pb2, http_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from reflow.assistant.v1 import assistant_pb2
from reflow.execution.v1 import execution_pb2
from reflow.gateway.v1 import gateway_pb2
from reflow.notebook.v1 import notebook_pb2

if TYPE_CHECKING:
    from collections.abc import Sequence

    from google.protobuf.descriptor import Descriptor, MethodDescriptor
    from google.protobuf.message import Message

EXAMPLES: Final = int(os.environ.get("REFLOW_FUZZ_EXAMPLES", "15"))

FUZZ_SETTINGS: Final = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

PUBLIC_SERVICES: Final = (
    notebook_pb2.DESCRIPTOR.services_by_name["NotebookService"],
    execution_pb2.DESCRIPTOR.services_by_name["ExecutionService"],
    assistant_pb2.DESCRIPTOR.services_by_name["AssistantService"],
    gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"],
)
METHODS: Final = [method for s in PUBLIC_SERVICES for method in s.methods]

ALLOWED_CODES: Final = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.OUT_OF_RANGE,
        # Streams are cut by the fuzzer's own deadline.
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
    }
)
"""What a malformed request may be answered with: never INTERNAL, UNKNOWN,
UNIMPLEMENTED or UNAVAILABLE (every service is up during the run)."""

_MAX_DEPTH: Final = 3
_BIG: Final = 1024 * 1024

HOSTILE_SEGMENTS: Final = (
    "%FF",
    "a%00b",
    "%C3%A9",
    "..",
    "%2e%2e%2f",
    "a" * 65,
    "%0d%0aX-Injected:%201",
    "%F0%9F%92%A9",
    "nb%20",
    "%E9",
)


@dataclass(frozen=True)
class KnownIds:
    """Ids of real resources of the fuzzing user."""

    notebook_id: str
    cell_id: str


def hostile_text() -> st.SearchStrategy[str]:
    """Strings a client should never send, and some it may."""
    return st.one_of(
        st.text(max_size=80),
        st.text(st.characters(codec="utf-8"), max_size=40),
        st.text(st.characters(min_codepoint=0, max_codepoint=0x1F), max_size=8),
        st.sampled_from(["", " ", "\x00", "é", "a\x00b", "../../etc/passwd", "x" * 65]),
        st.integers(1, 2).map(lambda n: "x" * (n * _BIG)),
    )


def ids(known: KnownIds | None) -> st.SearchStrategy[str]:
    """Mostly hostile strings, sometimes a real id of the caller."""
    real = [] if known is None else [known.notebook_id, known.cell_id]
    return st.one_of(hostile_text(), st.sampled_from(real or [""]))


def _field_value(
    field: FieldDescriptor, known: KnownIds | None, depth: int
) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return ids(known) if field.name.endswith("_id") else hostile_text()
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        return st.integers(-(2**31), 2**31 - 1)
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if kind in (
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SFIXED64,
    ):
        return st.integers(-(2**63), 2**63 - 1)
    if kind in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if field.message_type is not None:
        return messages(field.message_type, known, depth + 1)
    return st.integers(-(2**31), 2**31 - 1)


def messages(
    descriptor: Descriptor, known: KnownIds | None = None, depth: int = 0
) -> st.SearchStrategy[Message]:
    """Messages of ``descriptor``'s type with any subset of fields set."""
    message_class = message_factory.GetMessageClass(descriptor)
    if depth >= _MAX_DEPTH:
        return st.just(message_class())
    fields = {}
    for field in descriptor.fields:
        value = _field_value(field, known, depth)
        if _is_repeated(field):
            value = st.lists(value, max_size=3)
        fields[field.name] = st.none() | value
    return st.fixed_dictionaries(fields).map(
        lambda values: _build(message_class, values)
    )


def _is_repeated(field: Any) -> bool:
    return bool(field.is_repeated)


def _build(message_class: type[Message], values: dict[str, Any]) -> Message:
    message = message_class()
    for name, value in values.items():
        if value is None:
            continue
        field = message.DESCRIPTOR.fields_by_name[name]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            continue  # maps (string metadata) add little and need their own shape
        target = getattr(message, name)
        if _is_repeated(field):
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                for item in value:
                    target.add().CopyFrom(item)
            else:
                target.extend(value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            target.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


@st.composite
def mutated(draw: st.DrawFn, serialized: bytes) -> bytes:
    """``serialized`` damaged: cut short, bits flipped, bytes inserted."""
    data = bytearray(serialized)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["cut", "flip", "insert"]))
        if action == "cut" and data:
            del data[draw(st.integers(0, len(data) - 1)) :]
        elif action == "flip" and data:
            index = draw(st.integers(0, len(data) - 1))
            data[index] ^= 1 << draw(st.integers(0, 7))
        else:
            index = draw(st.integers(0, len(data)))
            data[index:index] = draw(
                st.sampled_from([b"\xff", b"\xc3", b"\x80", b"\x0a\xff", b"\x12\x7f"])
            )
    return bytes(data)


def request_bytes(
    method: MethodDescriptor, known: KnownIds | None
) -> st.SearchStrategy[bytes]:
    """Valid-but-hostile requests of ``method``, serialized or then damaged."""
    serialized = messages(method.input_type, known).map(
        lambda message: message.SerializeToString()
    )
    return st.one_of(serialized, serialized.flatmap(mutated), st.binary(max_size=32))


@dataclass(frozen=True)
class Route:
    """One REST route of the transcoder: verb, path template, whether it has a body."""

    verb: str
    template: str
    has_body: bool

    def path(self, segments: Sequence[str]) -> str:
        """The template with its ``{variables}`` replaced by ``segments``."""
        parts = iter(segments)
        return re.sub(r"\{[^}]+\}", lambda _: next(parts, "x"), self.template)

    @property
    def variables(self) -> int:
        return self.template.count("{")


def routes() -> list[Route]:
    """Every public RPC's REST route, from its ``google.api.http`` annotation."""
    found = []
    for method in METHODS:
        rule: http_pb2.HttpRule = method.GetOptions().Extensions[
            annotations_pb2.http  # type: ignore[index]
        ]
        verb = rule.WhichOneof("pattern")
        if verb is None:
            continue
        found.append(Route(verb.upper(), getattr(rule, verb), bool(rule.body)))
    return found


def json_values() -> st.SearchStrategy[Any]:
    """JSON documents, strings with control characters and lone surrogates."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False),
        st.text(st.characters(exclude_categories=()), max_size=30),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(
                st.sampled_from(
                    ["name", "code", "notebookId", "cellId", "type", "pageSize", "x"]
                )
                | st.text(max_size=10),
                children,
                max_size=5,
            ),
        ),
        max_leaves=20,
    )
