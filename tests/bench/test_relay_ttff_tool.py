"""bench.relay_ttff, TTFF on an edge against the origin: the tool runs two real nodes and measures both."""

from __future__ import annotations

import pytest

from bench.relay_ttff import run
from tests.realparts import REDIS_URL


@pytest.mark.slow
async def test_the_relay_ttff_tool_probes_the_origin_and_the_edge() -> None:
    """Protects the tool (not a speed): one probe of each kind decodes a frame, on the origin and on
    the edge (which served it through its relay, or the tool would have stopped), and the ratio is there."""
    res = await run(1, REDIS_URL)
    assert res["ttff_ms"]["origin"]["n"] == 1 and res["ttff_ms"]["edge"]["n"] == 1
    assert res["ttff_ms"]["edge"]["p50"] > 0 and res["edge_vs_origin_p50"] > 0
