"""The billing outbox's usage events, read and pruned for privacy (its own connection).

The outbox (``jasmin_metering.outbox``) holds one CloudEvent per billed second
of a private, with ``subject = member/<member_id>``. These events are usage
data: docs/product.md keeps them at most 120 days after the member's last purchase.
They are also what the billing sinks are fed from, so an event is deleted only
once **every** sink has acknowledged it (its position is at or below the lowest
sink cursor); a sink that never acked keeps everything.

A second SQLite connection on the outbox file, driven by one worker thread
(WAL lets it read beside the writer; a delete takes the write lock for one
batch of at most ``BATCH`` rows, a few milliseconds, so the writer on the event
loop never waits long: its busy timeout is 10 s).

The outbox is only a queue: the relay prunes an event as soon as every sink
acked it (``RelayConfig.prune_acked``), which is milliseconds after it was
written. After that the node's copies of the member's usage events are in the
**local sinks** of the same directory, ``billing-events.jsonl`` (``file``, the
default) and ``billing-events.sqlite3`` (``sqlite``). ``LocalBillingLog`` reads
those for the data download (read only: the running sinks own the files).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Mapping, Sequence, TypeVar

T = TypeVar("T")
BATCH = 1000


def _subject(member_id: str) -> bytes:
    # The outbox stores canonical JSON (sorted keys, no spaces): this exact byte string.
    return b'"subject":"member/' + member_id.encode() + b'"'


class OutboxUsageStore:
    """Usage events in one outbox file, by member."""

    def __init__(self, path: str, sinks: Sequence[str]) -> None:
        self.path = path
        self.sinks = tuple(sinks)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="privacy-usage")
        self._db: sqlite3.Connection | None = None

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def go() -> T:
            if self._db is None:
                self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
            return fn(self._db)

        return await asyncio.get_running_loop().run_in_executor(self._pool, go)

    @staticmethod
    def _has_outbox(db: sqlite3.Connection) -> bool:
        return db.execute("SELECT 1 FROM sqlite_master WHERE name = 'outbox_events'").fetchone() is not None

    async def export(self, member_id: str) -> list[dict[str, Any]]:
        """The member's usage events still in the outbox."""

        def go(db: sqlite3.Connection) -> list[dict[str, Any]]:
            if not self._has_outbox(db):
                return []
            rows = db.execute(
                "SELECT pos, source, id, hash, body FROM outbox_events WHERE instr(body, ?) > 0 ORDER BY pos",
                (_subject(member_id),),
            ).fetchall()
            return [{"pos": r[0], "source": r[1], "id": r[2], "hash": r[3], "body": json.loads(r[4])} for r in rows]

        return await self._call(go)

    async def purge(self, keep_until: Mapping[str, int], before: int, *, dry_run: bool = False) -> int:
        """Delete delivered events of members whose ``keep_until`` (last purchase) is before ``before``."""

        def go(db: sqlite3.Connection) -> int:
            if not self._has_outbox(db) or not self.sinks:
                return 0
            acked = dict(db.execute("SELECT sink, acked_pos FROM outbox_cursors").fetchall())
            low = min(int(acked.get(s, 0)) for s in self.sinks)
            n, after = 0, 0
            while True:
                rows = db.execute(
                    "SELECT pos, body FROM outbox_events WHERE pos > ? AND pos <= ? ORDER BY pos LIMIT ?",
                    (after, low, BATCH),
                ).fetchall()
                if not rows:
                    return n
                after = rows[-1][0]
                doomed = []
                for pos, body in rows:
                    subject = str(json.loads(body).get("subject", ""))
                    member = subject.removeprefix("member/")
                    if keep_until.get(member, 0) < before:
                        doomed.append((pos,))
                if doomed and not dry_run:
                    db.execute("BEGIN IMMEDIATE")
                    try:
                        db.executemany("DELETE FROM outbox_events WHERE pos = ?", doomed)
                    except BaseException:
                        db.execute("ROLLBACK")
                        raise
                    db.execute("COMMIT")
                n += len(doomed)

        return await self._call(go)

    async def close(self) -> None:
        """Close the connection and stop the thread."""

        def go(db: sqlite3.Connection) -> None:
            db.close()

        if self._db is not None:
            await self._call(go)
            self._db = None
        self._pool.shutdown(wait=True)


class LocalBillingLog:
    """The local billing sinks' copies of usage events, by member (read only).

    ``jsonl_path``: the ``file`` sink's JSON-lines log (one canonical CloudEvent a
    line; a torn last line is skipped, the sink cuts it off at its next open).
    ``sqlite_path``/``sqlite_table``: the ``sqlite`` sink's table. Either may be
    None (that sink is not configured) or not exist yet (nothing delivered).
    A download scans the whole log: linear in its size (about a second per
    million lines), in a worker thread; downloads are rare.
    """

    def __init__(
        self, jsonl_path: str | None, sqlite_path: str | None = None, sqlite_table: str = "billing_events"
    ) -> None:
        if not sqlite_table.replace("_", "").isalnum():
            raise ValueError(f"bad sqlite sink table name {sqlite_table!r}")
        self.jsonl_path = jsonl_path
        self.sqlite_path = sqlite_path
        self.sqlite_table = sqlite_table

    def _jsonl(self, member_id: str) -> list[dict[str, Any]]:
        path = self.jsonl_path
        if path is None or not os.path.exists(path):
            return []
        needle = _subject(member_id)
        out = []
        with open(path, "rb") as f:
            for line in f:
                if needle in line and line.endswith(b"\n"):
                    out.append(json.loads(line))
        return out

    def _sqlite(self, member_id: str) -> list[dict[str, Any]]:
        path = self.sqlite_path
        if path is None or not os.path.exists(path):
            return []
        # Read only: never creates the file, never takes the sink's write lock.
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            t = self.sqlite_table
            if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (t,)).fetchone() is None:
                return []
            rows = db.execute(
                f"SELECT source, id, hash, type, partitionkey, body FROM {t} WHERE instr(body, ?) > 0 ORDER BY rowid",
                (_subject(member_id).decode(),),
            ).fetchall()
        finally:
            db.close()
        return [
            {"source": r[0], "id": r[1], "hash": r[2], "type": r[3], "partitionkey": r[4], "body": json.loads(r[5])}
            for r in rows
        ]

    async def export(self, member_id: str) -> dict[str, list[dict[str, Any]]]:
        """The member's events in each configured local sink, by table."""

        def go() -> dict[str, list[dict[str, Any]]]:
            out: dict[str, list[dict[str, Any]]] = {}
            if self.jsonl_path is not None:
                out[os.path.basename(self.jsonl_path)] = self._jsonl(member_id)
            if self.sqlite_path is not None:
                out[self.sqlite_table] = self._sqlite(member_id)
            return out

        return await asyncio.to_thread(go)
