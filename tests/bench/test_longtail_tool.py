"""The long-tail scenario (bench/longtail.py) measures many small shows on the real daemon."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bench import longtail, scenario


@pytest.mark.slow
async def test_longtail_measures_two_shows_with_one_viewer_each(tmp_path: Path) -> None:
    """Protects the long-tail scenario itself: against a real daemon process, two shows,
    each with its synthetic publisher and one light viewer, yield a step whose three
    windows are consistent (the publishers' packets reached the SFU, every viewer got its
    first keyframe and received packets, the viewers sent their RR + REMB), the per-publisher
    and per-packet costs bench/README.md quotes, a per-viewers-per-show summary, and the
    JSON + PNG written next to each other."""
    o = longtail.parser().parse_args(
        [
            "--targets",
            "jasmin",
            "--steps",
            "2x1",
            "--seconds",
            "1.5",
            "--settle",
            "0.3",
            "--cpu",
            "-1",
            "--tool-cpu",
            "-1",
            "--reruns",
            "0",
        ]
    )
    r = await longtail.main_async(o)
    assert r["scenario"] == "longtail" and list(r["targets"]) == ["jasmin"]
    (step,) = r["targets"]["jasmin"]["steps"]
    assert (step["shows"], step["viewers_per_show"]) == (2, 1)
    assert step["failed_joins"] == 0 and step["not_started"] == 0 and step["errors"] == []
    pubs, full = step["publishers"], step["full"]
    assert pubs["packets_in"] > 0 and pubs["packets_out"] == 0  # no viewer yet in that window
    assert full["packets_in"] > 0 and full["packets_out"] > 0 and full["expected"] > 0
    # Two shows, one viewer each: every viewer gets both streams of its own show only.
    assert full["packets_out"] <= full["expected"] + 10
    assert 0.0 <= full["loss_pct"] <= 100.0
    assert 0.0 <= full["p50_ms"] <= full["p99_ms"] <= full["max_ms"]
    assert full["sfu_cpu_pct"] > 0.0 and full["cpu_us_per_packet_out"] > 0.0
    assert step["cpu_us_per_packet_in"] > 0.0
    assert step["viewer_rtcp_sent"] > 0 and step["viewer_rtcp_errors"] == 0
    assert step["verdict"] in ("ok", "sfu_limit", "tool_limit")
    summary = r["targets"]["jasmin"]["summary"]["1_viewers_per_show"]
    assert set(summary) >= {
        "shows_per_core_held",
        "shows_per_core_fit",
        "cpu_pct_per_publisher",
        "cpu_us_per_packet_out",
    }
    if step["verdict"] == "ok":
        assert summary["shows_per_core_held"] == 2
    out = tmp_path / "lt.json"
    # The plot imports and runs matplotlib (seconds on a loaded machine): off the event loop,
    # as the CLI draws it after its loop ended (scenario.cli), so tests/loop_guard.py cannot trip.
    await asyncio.to_thread(scenario.write, r, str(out), longtail.plot)
    assert json.loads(out.read_text())["targets"]["jasmin"]["steps"][0]["shows"] == 2
    assert (tmp_path / "lt.png").stat().st_size > 0


def test_longtail_step_syntax() -> None:
    """Protects the --steps syntax the README documents (SxV, comma-separated)."""
    assert longtail.parse_steps("40x5, 100X2") == [(40, 5), (100, 2)]
