"""docs/money.md's example usage and closing events are what the node emits (issue 11 #20).

A backend is written from the documented JSON: its ``type``, ``data.kind`` and field
names must be the ones the billing stack of the daemon writes to its sinks.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from jasmin_metering.events import CloudEvent
from jasmin_sfu.shows.billing import open_billing
from tests.conftest import REPO
from tests.realparts import FakeClock
from tests.shows.billing_crash_child import MEMBER, PERFORMER, PRICE, SHOW, billing_config, build_sinks

# Attributes the example shows that the node writes only when configured.
OPTIONAL = {"dataschema"}


def documented_events() -> dict[str, dict[str, Any]]:
    """The JSON blocks of docs/money.md that are CloudEvents, by their type's last two parts."""
    text = Path(REPO, "docs", "money.md").read_text()
    out = {}
    for block in re.findall(r"```json\n(.*?)```", text, re.S):
        obj = json.loads(block)
        if isinstance(obj, dict) and obj.get("specversion") == "1.0":
            out[".".join(obj["type"].split(".")[-2:])] = obj
    return out


async def emitted_events(tmp_path: Path) -> list[CloudEvent]:
    """Run one 3-second private through the real billing stack; the events its file sink got."""
    clock = FakeClock()
    spec = {"data_dir": str(tmp_path), "node_id": "doc"}
    stack = await open_billing(billing_config(spec), clock, sinks=build_sinks(spec))
    try:
        await stack.ledger.open_member(MEMBER)
        await stack.cc.top_up("seed", MEMBER, "p2999")
        private = await stack.billing.authorize(SHOW, MEMBER, PERFORMER, PRICE)
        stack.billing.start_metering(private, clock())
        clock.advance(3.5)
        stack.billing.tick(clock())
        stack.billing.stop_metering(private, clock(), "ended")
        await asyncio.wait_for(stack.relay.wait_idle(), 30)
    finally:
        await stack.close()
    lines = Path(tmp_path, "billing-events.jsonl").read_text().splitlines()
    return [CloudEvent.from_json(x) for x in lines]


async def test_documented_example_events_match_what_the_node_emits(tmp_path: Path) -> None:
    """Protects the event contract: the usage and closing examples of docs/money.md have the
    type, data.kind, attribute names and data field names of the events the node writes."""
    docs = documented_events()
    assert set(docs) == {"usage.v1", "closed.v1"}, f"docs/money.md examples: {sorted(docs)}"
    events = await emitted_events(tmp_path)
    by_kind = {"usage.v1": [e for e in events if not e.is_closing], "closed.v1": [e for e in events if e.is_closing]}
    assert len(by_kind["usage.v1"]) == 3 and len(by_kind["closed.v1"]) == 1
    for what, doc in docs.items():
        ev = by_kind[what][0].to_dict()
        assert ev["type"] == doc["type"], what
        assert ev["data"]["kind"] == doc["data"]["kind"], what
        assert set(ev) | (OPTIONAL & set(doc)) == set(doc), f"{what} attributes differ"
        assert set(ev["data"]) == set(doc["data"]), f"{what} data fields differ"
        assert ev["specversion"] == doc["specversion"] and ev["datacontenttype"] == doc["datacontenttype"]
        # The documented shapes of source, id and sequence.
        sid = ev["data"]["session_id"]
        assert ev["source"] == "urn:jasmin:live:session:" + sid and doc["source"].startswith("urn:jasmin:live:session:")
        assert ev["id"] == f"{sid}:{ev['sequence']}" and len(ev["sequence"]) == len(doc["sequence"])
