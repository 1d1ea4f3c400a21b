"""Closing the billing stack: the relay drains, then every sink is closed once."""

from __future__ import annotations

import json
from pathlib import Path

from jasmin_metering.config import FileSinkConfig
from jasmin_metering.file_sink import FileSink
from jasmin_sfu.shows.billing import open_billing
from tests.realparts import FakeClock
from tests.shows.billing_crash_child import MEMBER, PERFORMER, PRICE, SHOW, billing_config


class CountingFileSink(FileSink):
    """The real file sink, counting its close() calls."""

    closes = 0

    async def close(self) -> None:
        self.closes += 1
        await super().close()


async def test_stack_close_closes_each_sink_once(tmp_path: Path) -> None:
    """Protects the shutdown order of billing: BillingStack.close() drains the relay (the
    closing event of a private ended by the stop is in the sink) and closes each sink
    exactly once; the relay's stop already closes them, a second close is one too many
    (a sink whose close is not idempotent, a pool closed twice, would fail the drain)."""
    clock = FakeClock()
    spec = {"data_dir": str(tmp_path), "node_id": "close1"}
    path = tmp_path / "billing-events.jsonl"
    sink = CountingFileSink(FileSinkConfig(path=str(path), fsync_interval_ms=2))
    stack = await open_billing(billing_config(spec), clock, sinks={"file": sink})
    await stack.ledger.open_member(MEMBER)
    await stack.cc.top_up("seed", MEMBER, "p2999")
    private = await stack.billing.authorize(SHOW, MEMBER, PERFORMER, PRICE)
    stack.billing.start_metering(private, clock())
    clock.advance(3)
    await stack.close()  # a drain: the running private is closed as node_shutdown
    assert sink.closes == 1
    closing = [e for e in map(json.loads, path.read_text().splitlines()) if e["data"].get("closing")]
    assert [(e["data"]["reason"], e["data"]["billed_seconds"]) for e in closing] == [("node_shutdown", 3)]
