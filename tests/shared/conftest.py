"""Fixtures for the shared service kit's tests."""

from __future__ import annotations

import pytest

from services.shared.auth import InternalTokens

TEST_SECRET = "test-internal-secret-at-least-32-bytes-long"


@pytest.fixture
def tokens() -> InternalTokens:
    """Internal tokens signed with the tests' secret."""
    return InternalTokens(TEST_SECRET)
