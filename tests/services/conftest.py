"""Ledger fixtures: the same tests run on SQLite and on the real PostgreSQL (tests/store/conftest.py)."""

from tests.store.conftest import ledger, store  # noqa: F401  (fixtures)
