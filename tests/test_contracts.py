"""The .proto contracts: offline grpcurl, descriptor set, REST annotations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GRPCURL = Path(sys.prefix) / "bin" / "grpcurl"
# googleapis' stubs type the extension as a plain FieldDescriptor.
HTTP_RULE: Any = annotations_pb2.http

SERVICES = {
    "reflow/notebook/v1/notebook.proto": "reflow.notebook.v1.NotebookService",
    "reflow/execution/v1/execution.proto": "reflow.execution.v1.ExecutionService",
    "reflow/assistant/v1/assistant.proto": "reflow.assistant.v1.AssistantService",
    "reflow/gateway/v1/gateway.proto": "reflow.gateway.v1.GatewayService",
}

# The REST paths of DESIGN §2, as (method, path template) pairs.
DESIGN_REST_PATHS = {
    ("post", "/api/v1/notebooks"),
    ("get", "/api/v1/notebooks"),
    ("get", "/api/v1/notebooks/{notebook_id}"),
    ("delete", "/api/v1/notebooks/{notebook_id}"),
    ("put", "/api/v1/notebooks/{notebook_id}/name"),
    ("put", "/api/v1/notebooks/{notebook_id}/db"),
    ("post", "/api/v1/notebooks/{notebook_id}/cells"),
    ("put", "/api/v1/notebooks/{notebook_id}/cells/{cell_id}"),
    ("delete", "/api/v1/notebooks/{notebook_id}/cells/{cell_id}"),
    ("post", "/api/v1/chat/{notebook_id}"),
    ("get", "/api/v1/health"),
}


def _descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    return descriptor_pb2.FileDescriptorSet.FromString(
        (PROTOS / "reflow.binpb").read_bytes()
    )


def _public_methods() -> list[descriptor_pb2.MethodDescriptorProto]:
    return [
        method
        for file in _descriptor_set().file
        if file.package.startswith("reflow.")
        for service in file.service
        if not service.name.endswith("InternalService")
        for method in service.method
    ]


@pytest.mark.parametrize(("proto", "service"), sorted(SERVICES.items()))
def test_grpcurl_describes_each_contract_offline(proto: str, service: str) -> None:
    result = subprocess.run(
        [str(GRPCURL), "-import-path", str(PROTOS), "-proto", proto, "describe"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )

    assert f"{service} is a service:" in result.stdout
    assert "rpc " in result.stdout
    assert "// " in result.stdout  # comments travel with the contract


def test_descriptor_set_carries_status_details_for_envoy() -> None:
    names = {file.name for file in _descriptor_set().file}

    assert {"google/rpc/status.proto", "google/rpc/error_details.proto"} <= names
    assert set(SERVICES) <= names


def test_every_public_rpc_has_an_http_annotation() -> None:
    missing = [
        method.name
        for method in _public_methods()
        if not method.options.HasExtension(HTTP_RULE)
    ]

    assert missing == []


def test_design_rest_paths_are_all_mapped() -> None:
    mapped = set()
    for method in _public_methods():
        rule: http_pb2.HttpRule = method.options.Extensions[HTTP_RULE]
        verb = rule.WhichOneof("pattern")
        assert verb is not None
        mapped.add((verb, getattr(rule, verb)))

    assert DESIGN_REST_PATHS <= mapped
