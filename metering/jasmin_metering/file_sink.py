"""Local append-only JSON-lines billing log: the embedded default sink.

One canonical CloudEvent JSON per line. Durability by group commit: ``deliver``
writes its lines at once and waits for the fsync that covers them; the fsync runs
when ``fsync_every_events`` events are waiting or ``fsync_interval_ms`` after the
first unsynced write, whichever comes first, in a worker thread (an fsync takes
0.1-10 ms and must not stall the event loop). So an ack is always durable, and
under load one fsync covers many batches.

Dedupe: an in-memory index (source, id) -> content hash, rebuilt by scanning the
file at open (about 1 s per million lines). A torn last line left by a crash is
cut off at open; its event was never acked, so the outbox sends it again.
"""

from __future__ import annotations

import asyncio
import os
from typing import IO, Sequence

from jasmin_metering.config import FileSinkConfig
from jasmin_metering.errors import SinkConflictError, SinkUnavailableError
from jasmin_metering.events import CloudEvent
from jasmin_metering.sink import dedupe_batch


class FileSink:
    """Append-only JSON lines with group-commit fsync."""

    def __init__(self, config: FileSinkConfig, name: str = "file") -> None:
        self.name = name
        self.config = config
        self._f: IO[bytes] | None = None
        self._index: dict[tuple[str, str], str] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._unsynced = 0
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self.fsyncs = 0  # observable for tests and metrics

    def _open(self) -> IO[bytes]:
        if self._f is not None:
            return self._f
        path = self.config.path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        index: dict[tuple[str, str], str] = {}
        good = 0
        if os.path.exists(path):
            with open(path, "rb") as r:
                for line in r:
                    if not line.endswith(b"\n"):
                        break  # torn tail of a crash: never acked
                    try:
                        ev = CloudEvent.from_json(line)
                    except Exception:
                        break
                    index[ev.key] = ev.content_hash()
                    good += len(line)
            if good != os.path.getsize(path):
                with open(path, "r+b") as w:
                    w.truncate(good)
                    os.fsync(w.fileno())
        self._index = index
        self._f = open(path, "ab")
        return self._f

    def stored(self) -> list[CloudEvent]:
        """Every event in the file, in order (for tests and audits)."""
        out: list[CloudEvent] = []
        if not os.path.exists(self.config.path):
            return out
        with open(self.config.path, "rb") as r:
            for line in r:
                if line.endswith(b"\n"):
                    out.append(CloudEvent.from_json(line))
        return out

    async def deliver(self, events: Sequence[CloudEvent]) -> None:
        """Append the new events and return once they are fsynced."""
        try:
            f = self._open()
        except OSError as e:
            raise SinkUnavailableError(f"billing log {self.config.path}: {e}") from e
        batch, conflicts = dedupe_batch(events)
        lines: list[bytes] = []
        for ev in batch:
            h = ev.content_hash()
            prev = self._index.get(ev.key)
            if prev is None:
                lines.append(ev.to_json() + b"\n")
                self._index[ev.key] = h
            elif prev != h:
                conflicts.append(ev.key)
        if lines:
            try:
                f.write(b"".join(lines))
                f.flush()
            except OSError as e:
                self._broken()
                raise SinkUnavailableError(f"billing log write: {e}") from e
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            self._unsynced += len(lines)
            self._schedule()
            try:
                await fut
            except OSError as e:
                raise SinkUnavailableError(f"billing log fsync: {e}") from e
        if conflicts:
            raise SinkConflictError(conflicts)

    def _schedule(self) -> None:
        if self._unsynced >= self.config.fsync_every_events:
            self._start_flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.config.fsync_interval_ms / 1000.0, self._start_flush)

    def _start_flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self._waiters:
            waiters, self._waiters = self._waiters, []
            self._unsynced = 0
            f = self._f
            try:
                if f is None:
                    raise OSError("billing log closed")
                await asyncio.to_thread(os.fsync, f.fileno())
                self.fsyncs += 1
            except OSError as e:
                # What was written may or may not be durable: forget the index
                # and rescan at the next deliver, so nothing is acked undurable.
                self._broken()
                for w in waiters:
                    if not w.done():
                        w.set_exception(e)
                continue
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    def _broken(self) -> None:
        if self._f is not None:
            try:
                self._f.close()
            except OSError:
                pass
        self._f = None
        self._index = {}

    async def close(self) -> None:
        """Flush pending fsyncs and close the file."""
        if self._waiters:
            self._start_flush()
        if self._flushing is not None:
            await self._flushing
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._f is not None:
            self._f.close()
            self._f = None
