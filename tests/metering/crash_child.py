"""Child process for the outbox crash test: appends usage events while relaying them to a
file sink and a SQLite sink that ack slowly; the parent kills it with SIGKILL mid-way.

Usage: python -m tests.metering.crash_child OUTBOX_PATH SINK_DIR
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Sequence

from jasmin_metering.config import FileSinkConfig, OutboxConfig, RelayConfig, SqliteSinkConfig
from jasmin_metering.events import CloudEvent
from jasmin_metering.file_sink import FileSink
from jasmin_metering.outbox import Outbox, OutboxRelay
from jasmin_metering.sink import BillingSink
from jasmin_metering.sqlite_sink import SqliteSink
from tests.metering.conftest import make_events


class SlowAck:
    """Delivers at once, then waits before answering: a kill here leaves delivered-but-unacked events."""

    def __init__(self, inner: BillingSink) -> None:
        self.inner = inner
        self.name = inner.name

    async def deliver(self, events: Sequence[CloudEvent]) -> None:
        await self.inner.deliver(events)
        await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.inner.close()


def sinks(sink_dir: str) -> dict[str, BillingSink]:
    """The two sinks, by name (the parent reopens them under the same names)."""
    return {
        "file": FileSink(FileSinkConfig(path=os.path.join(sink_dir, "log.jsonl"), fsync_interval_ms=2)),
        "sqlite": SqliteSink(SqliteSinkConfig(path=os.path.join(sink_dir, "sink.sqlite3"))),
    }


async def main(outbox_path: str, sink_dir: str) -> None:
    outbox = Outbox(OutboxConfig(path=outbox_path))
    relay = OutboxRelay(
        outbox,
        {n: SlowAck(s) for n, s in sinks(sink_dir).items()},
        RelayConfig(batch_max=10, prune_acked=False, initial_backoff_ms=5, max_backoff_ms=50),
    )
    relay.start()
    events = make_events(4, 60)
    for i in range(0, len(events), 8):
        outbox.append(events[i : i + 8])
        await asyncio.sleep(0.005)
    await asyncio.sleep(3600)  # the parent kills us long before


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
