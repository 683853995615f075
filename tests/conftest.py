"""Fixtures shared by every test folder."""

from __future__ import annotations

import importlib.util
import os

import pytest

# grpc's C core prints INFO lines ("Got goaway") to stderr when test servers
# stop; they are noise, not failures.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

if importlib.util.find_spec("reflow.notebook.v1.notebook_pb2") is None:
    raise pytest.UsageError("generated protobuf code is missing: run `make protos`")
