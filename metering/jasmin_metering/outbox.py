"""The durable outbox and its relay to the billing sinks.

Writer side (``Outbox.append``): synchronous and local, never touches the
network. Each call is one SQLite transaction that appends the events *and*
advances each session's seq counter, so an event exists in the outbox if and
only if its seq was counted: a crash cannot leave a hole or a double. With WAL
and ``synchronous=NORMAL`` a commit is a WAL append without fsync, tens of
microseconds, fine inside the media event loop.

Relay side (``OutboxRelay``): one task per sink, each with its own cursor
(``acked_pos``) in the same file. A task reads the events after its cursor,
``deliver``s them and only then moves the cursor: at-least-once, and sinks dedupe
on (source, id), so exactly-once in every sink. A failing sink backs off
exponentially on its own; the writer and the other sinks never wait for it. A
restart resumes every sink from its persisted cursor, re-sending whatever it had
not acked.

One outbox file belongs to one process (positions are read in commit order,
which one writer connection guarantees).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sqlite3
from dataclasses import dataclass
from typing import Awaitable, Callable, Mapping, Sequence

from jasmin_metering.config import OutboxConfig, RelayConfig
from jasmin_metering.errors import (
    OutboxConflictError,
    OutboxSessionClosedError,
    SequenceGapError,
    SinkConflictError,
)
from jasmin_metering.events import CloudEvent
from jasmin_metering.sink import BillingSink

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox_events (
    pos INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    id TEXT NOT NULL,
    hash TEXT NOT NULL,
    body BLOB NOT NULL,
    UNIQUE (source, id)
);
CREATE TABLE IF NOT EXISTS outbox_sources (
    source TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    closed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS outbox_cursors (
    sink TEXT PRIMARY KEY,
    acked_pos INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox_dead (
    sink TEXT NOT NULL,
    pos INTEGER NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (sink, pos)
);
"""


@dataclass(frozen=True)
class OutboxRow:
    """One stored event and its position."""

    pos: int
    event: CloudEvent


class Outbox:
    """The append side and the storage of cursors; one SQLite file in WAL mode."""

    def __init__(self, config: OutboxConfig) -> None:
        self.config = config
        path = config.path
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if config.synchronous not in ("NORMAL", "FULL"):
            raise ValueError("outbox synchronous must be NORMAL or FULL")
        self._db = sqlite3.connect(path, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={config.synchronous}")
        self._db.executescript(_SCHEMA)
        self._listeners: list[Callable[[], None]] = []

    # -- writer -----------------------------------------------------------------

    def append(self, events: Sequence[CloudEvent]) -> int:
        """Append events atomically with their sources' seq counters; returns how many were new.

        Per source the seqs must continue the stored counter (contiguous from 1).
        Re-appending an already stored event (same hash) is a no-op, so a caller
        may retry after an exception; the same (source, id) with another payload
        raises ``OutboxConflictError``; a hole raises ``SequenceGapError``; an
        event after the closing one raises ``OutboxSessionClosedError``. On any
        error nothing of the call is kept.
        """
        if not events:
            return 0
        db = self._db
        added = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            counters: dict[str, tuple[int, bool]] = {}
            for ev in events:
                h = ev.content_hash()
                row = db.execute(
                    "SELECT hash FROM outbox_events WHERE source = ? AND id = ?", (ev.source, ev.id)
                ).fetchone()
                if row is not None:
                    if row[0] != h:
                        raise OutboxConflictError(f"{ev.source} {ev.id} exists with a different payload")
                    continue
                if ev.source not in counters:
                    r = db.execute(
                        "SELECT last_seq, closed FROM outbox_sources WHERE source = ?", (ev.source,)
                    ).fetchone()
                    counters[ev.source] = (int(r[0]), bool(r[1])) if r else (0, False)
                last, closed = counters[ev.source]
                seq = ev.seq
                if seq <= last:
                    continue  # stored once, already pruned after every sink acked it
                if closed:
                    raise OutboxSessionClosedError(f"{ev.source} is closed; refusing seq {seq}")
                if seq != last + 1:
                    raise SequenceGapError(f"{ev.source}: seq {seq} after {last}")
                db.execute(
                    "INSERT INTO outbox_events (source, id, hash, body) VALUES (?, ?, ?, ?)",
                    (ev.source, ev.id, h, ev.to_json()),
                )
                counters[ev.source] = (seq, ev.is_closing)
                added += 1
            for source, (last, closed) in counters.items():
                db.execute(
                    "INSERT INTO outbox_sources (source, last_seq, closed) VALUES (?, ?, ?)"
                    " ON CONFLICT (source) DO UPDATE SET last_seq = excluded.last_seq, closed = excluded.closed",
                    (source, last, int(closed)),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if added:
            for cb in self._listeners:
                cb()
        return added

    def last_seq(self, source: str) -> tuple[int, bool]:
        """(last stored seq, closed) of a source: where a failover node resumes."""
        r = self._db.execute("SELECT last_seq, closed FROM outbox_sources WHERE source = ?", (source,)).fetchone()
        return (int(r[0]), bool(r[1])) if r else (0, False)

    def add_listener(self, cb: Callable[[], None]) -> None:
        """Call ``cb`` after every append that added events (the relay's wake-up)."""
        self._listeners.append(cb)

    def remove_listener(self, cb: Callable[[], None]) -> None:
        """Undo ``add_listener``."""
        if cb in self._listeners:
            self._listeners.remove(cb)

    # -- relay side ---------------------------------------------------------------

    def cursor(self, sink: str) -> int:
        """The last position ``sink`` acked (0 for a new sink)."""
        r = self._db.execute("SELECT acked_pos FROM outbox_cursors WHERE sink = ?", (sink,)).fetchone()
        return int(r[0]) if r else 0

    def read_after(self, pos: int, limit: int) -> list[OutboxRow]:
        """Up to ``limit`` events after ``pos``, in order."""
        rows = self._db.execute(
            "SELECT pos, body FROM outbox_events WHERE pos > ? ORDER BY pos LIMIT ?", (pos, limit)
        ).fetchall()
        return [OutboxRow(int(p), CloudEvent.from_json(b)) for p, b in rows]

    def ack(self, sink: str, pos: int, dead: Sequence[tuple[int, str]] = ()) -> None:
        """Move ``sink``'s cursor to ``pos``; record events set aside (conflicts) in the same commit."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO outbox_cursors (sink, acked_pos) VALUES (?, ?)"
                " ON CONFLICT (sink) DO UPDATE SET acked_pos = max(acked_pos, excluded.acked_pos)",
                (sink, pos),
            )
            for p, reason in dead:
                db.execute("INSERT OR IGNORE INTO outbox_dead (sink, pos, reason) VALUES (?, ?, ?)", (sink, p, reason))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def dead_letters(self, sink: str) -> list[tuple[int, str]]:
        """Positions a sink refused as conflicts, with the reason."""
        return [
            (int(p), str(r))
            for p, r in self._db.execute("SELECT pos, reason FROM outbox_dead WHERE sink = ? ORDER BY pos", (sink,))
        ]

    def max_pos(self) -> int:
        """The last position ever written (AUTOINCREMENT survives pruning)."""
        r = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox_events'").fetchone()
        return int(r[0]) if r else 0

    def prune(self, sinks: Sequence[str]) -> int:
        """Delete events every one of ``sinks`` has acked; returns how many."""
        if not sinks:
            return 0
        low = min(self.cursor(s) for s in sinks)
        cur = self._db.execute("DELETE FROM outbox_events WHERE pos <= ?", (low,))
        return cur.rowcount

    def count(self) -> int:
        """Events currently stored."""
        return int(self._db.execute("SELECT count(*) FROM outbox_events").fetchone()[0])

    def checkpoint(self) -> None:
        """Fsync the WAL into the database (a separate connection: safe from a worker thread)."""
        if self.config.path == ":memory:":
            return
        db = sqlite3.connect(self.config.path, isolation_level=None, timeout=10)
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            db.close()

    def close(self) -> None:
        """Close the writer connection."""
        self._db.close()


class OutboxRelay:
    """Delivers the outbox to every sink, each on its own task, cursor and backoff."""

    def __init__(
        self,
        outbox: Outbox,
        sinks: Mapping[str, BillingSink],
        config: RelayConfig = RelayConfig(),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.outbox = outbox
        self.sinks = dict(sinks)
        self.config = config
        self._sleep = sleep
        self._wake: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.failures: dict[str, int] = {name: 0 for name in self.sinks}
        self.delivered: dict[str, int] = {name: 0 for name in self.sinks}

    def _notify(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._wake_all)

    def _wake_all(self) -> None:
        for ev in self._wake.values():
            ev.set()

    def start(self) -> None:
        """Start one task per sink plus the WAL checkpointer."""
        if self._tasks:
            return
        self._loop = asyncio.get_running_loop()
        self.outbox.add_listener(self._notify)
        for name, sink in self.sinks.items():
            self._wake[name] = asyncio.Event()
            self._tasks.append(self._loop.create_task(self._run(name, sink), name=f"relay-{name}"))
        self._tasks.append(self._loop.create_task(self._checkpointer(), name="relay-checkpoint"))

    async def stop(self) -> None:
        """Cancel the tasks (un-acked events stay in the outbox) and close the sinks."""
        self.outbox.remove_listener(self._notify)
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Every sink is closed even when one fails to (a broker already gone): a
        # failed close is logged, never raised into the daemon's shutdown.
        for name, sink in self.sinks.items():
            try:
                await sink.close()
            except Exception as e:  # noqa: BLE001 - shutdown goes on past a broken sink
                log.warning("billing sink %s failed to close: %r", name, e)

    def lag(self, sink: str) -> int:
        """Positions written but not yet acked by ``sink``."""
        return self.outbox.max_pos() - self.outbox.cursor(sink)

    async def wait_idle(self, sink: str | None = None) -> None:
        """Return once ``sink`` (or every sink) has acked everything written so far.

        Tests and the SIGTERM drain bound this with their own timeout.
        """
        names = [sink] if sink else list(self.sinks)
        target = self.outbox.max_pos()
        while any(self.outbox.cursor(n) < target for n in names):
            await asyncio.sleep(0.01)

    async def _run(self, name: str, sink: BillingSink) -> None:
        c = self.config
        delay = c.initial_backoff_ms / 1000.0
        wake = self._wake[name]
        while True:
            cursor = self.outbox.cursor(name)
            rows = self.outbox.read_after(cursor, c.batch_max)
            if not rows:
                # A timer instead of asyncio.wait_for: on Python 3.11 wait_for can
                # swallow a cancellation that races its timeout, and stop() hangs.
                wake.clear()
                timer = asyncio.get_running_loop().call_later(c.poll_interval_ms / 1000.0, wake.set)
                try:
                    await wake.wait()
                finally:
                    timer.cancel()
                continue
            dead: list[tuple[int, str]] = []
            try:
                await sink.deliver([r.event for r in rows])
            except SinkConflictError as e:
                bad = set(e.conflicts)
                dead = [(r.pos, "conflict: same (source, id), other payload") for r in rows if r.event.key in bad]
                log.error("billing sink %s refused %d conflicting event(s): %s", name, len(dead), e.conflicts[:3])
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure of a sink means "retry later"
                self.failures[name] += 1
                log.warning("billing sink %s failed (%r); retrying in %.2f s", name, e, delay)
                await self._sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, c.max_backoff_ms / 1000.0)
                continue
            delay = c.initial_backoff_ms / 1000.0
            self.outbox.ack(name, rows[-1].pos, dead)
            self.delivered[name] += len(rows)
            if c.prune_acked:
                self.outbox.prune(list(self.sinks))

    async def _checkpointer(self) -> None:
        interval = self.outbox.config.checkpoint_interval_ms / 1000.0
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.outbox.checkpoint)
            except sqlite3.Error as e:
                log.warning("outbox checkpoint failed: %r", e)
