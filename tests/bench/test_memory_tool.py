"""The memory scenario (bench/memory.py) produces a complete record against the real daemon."""

from __future__ import annotations

import pytest

from bench import memory


@pytest.mark.slow
async def test_memory_tool_reads_base_viewer_and_show_rss_of_the_daemon() -> None:
    """Protects the memory scenario itself: against a real daemon process, with real
    publishers and viewers, it reads RSS at every point of both ramps (every viewer got
    its media: no failed join) and reports base RSS and the per-viewer and per-show
    slopes that bench/results and bench/README.md quote."""
    o = memory.parser().parse_args(
        [
            "--targets",
            "jasmin",
            "--viewers",
            "0,2",
            "--shows",
            "1,2",
            "--viewers-per-show",
            "1",
            "--settle",
            "0.2",
            "--cpu",
            "-1",
        ]
    )
    r = await memory.main_async(o)
    j = r["targets"]["jasmin"]
    assert j["base_rss_mb"] > 10.0
    viewers, shows = j["ramps"]
    assert [(p["shows"], p["viewers"]) for p in viewers["points"]] == [(1, 0), (1, 2)]
    assert [(p["shows"], p["viewers"]) for p in shows["points"]] == [(1, 1), (2, 2)]
    assert viewers["errors"] == [] and shows["errors"] == []
    assert all(p["rss_mb"] >= j["base_rss_mb"] * 0.9 for p in viewers["points"] + shows["points"])
    assert isinstance(j["rss_per_viewer_mb"], float) and isinstance(j["rss_per_show_mb"], float)
