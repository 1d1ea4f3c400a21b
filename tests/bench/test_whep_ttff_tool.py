"""bench.whep_ttff, TTFF of a WHEP viewer against a websocket viewer: the tool runs a real node and measures both."""

from __future__ import annotations

import pytest

from bench.whep_ttff import run


@pytest.mark.slow
async def test_the_whep_ttff_tool_probes_a_websocket_and_a_whep_viewer() -> None:
    """Protects the tool (not a speed): it starts its node, and one probe of each kind decodes a
    frame from the published show, then the node is stopped."""
    res = await run(1)
    assert res["ttff_ms"]["websocket"]["n"] == 1 and res["ttff_ms"]["whep"]["n"] == 1
    assert res["ttff_ms"]["websocket"]["p50"] > 0 and res["ttff_ms"]["whep"]["p50"] > 0
