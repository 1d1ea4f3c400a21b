"""WHIP/WHEP tests: the accounts daemon of tests/api (tokens, billing, the test payment provider)."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from tests.api.conftest import api  # noqa: F401  (the fixture)
from tests.api.test_signaling_auth import clients  # noqa: F401  (the fixture)


@pytest.fixture
async def pcs() -> AsyncIterator[list[Any]]:
    """Peers (and clients) a test opened; each is closed after it."""
    opened: list[Any] = []
    yield opened
    for x in opened:
        await x.close()
