"""Errors of the store package."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of store errors."""


class RetryableStoreError(StoreError):
    """A deadlock, serialization failure or unique-key race: rerun the whole transaction."""


class IntegrityStoreError(StoreError):
    """A constraint refused a write (e.g. a wallet CHECK): a bug above the store, not a race."""


class MigrationError(StoreError):
    """The schema is newer than this code, or a migration failed."""


class DuplicateKeyError(StoreError):
    """A row with this unique key exists (or the key is reserved): the caller's conflict, not a race."""
