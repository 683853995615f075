"""Fixtures shared by every test folder."""

from __future__ import annotations

import importlib.util

import pytest

if importlib.util.find_spec("reflow.notebook.v1.notebook_pb2") is None:
    raise pytest.UsageError("generated protobuf code is missing: run `make protos`")
