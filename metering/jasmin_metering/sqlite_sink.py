"""SQLite billing sink: one row per (source, id), PRIMARY KEY as the dedupe.

Runs in a worker thread (``synchronous=FULL``: each batch commit fsyncs, which
must not stall the event loop). Mark-as-seen and the effect are the same row,
so a failed write leaves nothing claimed (OpenMeter #5118).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from typing import Sequence

from jasmin_metering.config import SqliteSinkConfig
from jasmin_metering.errors import SinkConflictError, SinkUnavailableError
from jasmin_metering.events import CloudEvent
from jasmin_metering.sink import dedupe_batch, sql_ident


class SqliteSink:
    """Events in a SQLite table, idempotent on (source, id)."""

    def __init__(self, config: SqliteSinkConfig, name: str = "sqlite") -> None:
        self.name = name
        self.config = config
        self._table = sql_ident(config.table)
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            path = self.config.path
            if path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {self._table} ("
                " source TEXT NOT NULL, id TEXT NOT NULL, hash TEXT NOT NULL,"
                " type TEXT NOT NULL, partitionkey TEXT NOT NULL, body TEXT NOT NULL,"
                " PRIMARY KEY (source, id))"
            )
            self._db = db
        return self._db

    def _deliver_sync(self, events: Sequence[CloudEvent]) -> list[tuple[str, str]]:
        batch, conflicts = dedupe_batch(events)
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                for ev in batch:
                    h = ev.content_hash()
                    cur = db.execute(
                        f"INSERT INTO {self._table} (source, id, hash, type, partitionkey, body)"
                        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source, id) DO NOTHING",
                        (ev.source, ev.id, h, ev.type, ev.partitionkey, ev.to_json().decode()),
                    )
                    if cur.rowcount == 0:
                        row = db.execute(
                            f"SELECT hash FROM {self._table} WHERE source = ? AND id = ?", (ev.source, ev.id)
                        ).fetchone()
                        if row is not None and row[0] != h:
                            conflicts.append(ev.key)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return conflicts

    async def deliver(self, events: Sequence[CloudEvent]) -> None:
        """Insert the batch in one transaction; duplicates are no-ops."""
        try:
            conflicts = await asyncio.to_thread(self._deliver_sync, events)
        except sqlite3.Error as e:
            raise SinkUnavailableError(f"sqlite sink: {e}") from e
        if conflicts:
            raise SinkConflictError(conflicts)

    def stored(self) -> list[tuple[str, str, str]]:
        """(source, id, body) of every stored event, for tests and audits."""
        with self._lock:
            return [
                (r[0], r[1], r[2])
                for r in self._conn().execute(f"SELECT source, id, body FROM {self._table} ORDER BY source, id")
            ]

    async def close(self) -> None:
        """Close the connection."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
