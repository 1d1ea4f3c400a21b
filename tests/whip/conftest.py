"""WHIP/WHEP tests: the accounts daemon of tests/api (tokens, billing, the test payment provider)."""

from __future__ import annotations

from tests.api.conftest import api  # noqa: F401  (the fixture)
