"""Switching a SQLite file to WAL when other processes may be opening it too.

``PRAGMA journal_mode=WAL`` needs a moment of exclusive access and answers
``database is locked`` at once, without the busy handler, when a sibling
process (another worker) holds the file; it is retried here for up to
``timeout_s``. A file already in WAL mode answers at once.
"""

from __future__ import annotations

import sqlite3
import time


def enable_wal(db: sqlite3.Connection, timeout_s: float = 30.0) -> None:
    """Put ``db`` in WAL mode, retrying while another connection holds the lock."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)  # runs in the store's own thread, never on the event loop
