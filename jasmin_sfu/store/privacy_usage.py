"""The billing outbox's usage events, read and pruned for privacy (its own connection).

The outbox (``jasmin_metering.outbox``) holds one CloudEvent per billed second
of a private, with ``subject = member/<member_id>``. These events are usage
data: PRODUCT.md keeps them at most 120 days after the member's last purchase.
They are also what the billing sinks are fed from, so an event is deleted only
once **every** sink has acknowledged it (its position is at or below the lowest
sink cursor); a sink that never acked keeps everything.

A second SQLite connection on the outbox file, driven by one worker thread
(WAL lets it read beside the writer; a delete takes the write lock for one
batch of at most ``BATCH`` rows, a few milliseconds, so the writer on the event
loop never waits long: its busy timeout is 10 s).
"""

from __future__ import annotations

import asyncio
import json
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
